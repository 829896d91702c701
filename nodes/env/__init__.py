"""Environment node kinds: GridLife (the reference arena), the homeostat and the Gymnasium adapter."""
