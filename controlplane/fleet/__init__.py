"""Fleet domain of the control plane."""
