"""Environments as kernels: shared envs (admin, revisions), personal envs, kernel discovery."""
