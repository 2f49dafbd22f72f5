"""Bridge mode: the appliance as an MQTT 5 client of an upstream broker (client.py sans-IO, runner.py trio)."""
