"""Filters domain of the control plane."""
