"""Reach-avoid model-predictive control for GridLife (CEM over action sequences); numpy and numba, no torch."""
