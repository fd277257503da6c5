"""Energy P2P edge controller: the daemon that runs on a Raspberry Pi in each home."""

__version__ = "0.1.0"
