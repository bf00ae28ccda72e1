"""Cleanup domain of the control plane."""
