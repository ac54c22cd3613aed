"""Plain OS plumbing (names, Linux accounts, processes); nothing here imports jupyterhub."""
