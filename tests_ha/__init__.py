"""The Home Assistant integration's tests (Python 3.14; run by scripts/ha-test)."""
