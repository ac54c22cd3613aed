"""Shared test harness: a real teamhub hub process and a browser-like client."""
