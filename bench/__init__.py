"""Benchmarks: teamhub against vanilla JupyterHub (python -m bench), env builds (envs.py)."""
