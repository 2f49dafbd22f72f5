"""Sparkplug B: payload codec (payload.py over wire.py) and the host application state (host.py)."""
