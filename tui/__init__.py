"""The Millstream operator console (Textual).

It talks to an appliance only through the admin API client (`appliance.admin.client`) and the
shared response models (`appliance.admin.models`); tests/tui/test_imports.py keeps it that way.
"""
