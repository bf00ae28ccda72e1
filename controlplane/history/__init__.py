"""Configuration history: every change recorded in the transaction that makes it."""
