"""Spawners: how a hub user's server is started."""
