"""requests over unix sockets (the hub's and the proxy's APIs): bench's adapter, shared."""

from bench.unixsocket import UnixAdapter, session

__all__ = ["UnixAdapter", "session"]
