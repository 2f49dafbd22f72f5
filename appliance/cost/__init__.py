"""Cost model: the monthly bill of one measured workload on broker-attached storage (RF=3 across
zones) and on object-storage-backed brokers (Millstream's cloud role), line by line. Pure.
"""
