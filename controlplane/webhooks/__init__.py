"""Webhooks domain of the control plane."""
