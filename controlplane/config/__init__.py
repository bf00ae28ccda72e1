"""Config domain of the control plane."""
