"""Container engines: the Engine protocol and its Docker Engine API implementation."""
