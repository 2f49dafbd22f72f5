"""`python -m appliance` is the same as the `millstream` command."""

from appliance.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
