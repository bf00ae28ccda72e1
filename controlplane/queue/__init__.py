"""Queue domain of the control plane."""
