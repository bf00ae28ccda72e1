"""Ingest domain of the control plane."""
