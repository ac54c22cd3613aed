"""teamhub: the team Jupyter server."""

__version__ = "0.1.0"
