"""The sweep launcher: `python -m launch.sweep` (see launch/README.md)."""
