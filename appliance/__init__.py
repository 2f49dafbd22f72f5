"""Millstream: an edge-to-cloud streaming appliance for factories."""

__version__ = "0.1.0"
