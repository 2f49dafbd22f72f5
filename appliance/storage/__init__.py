"""Storage: a write-ahead log in front of object storage, behind the ports in `ports.py`."""
