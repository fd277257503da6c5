"""`python -m edge_controller` is the same as the `energy-p2p-edge` command."""

from edge_controller.cli import main

# Guarded: signature worker processes import this module as `__mp_main__`.
if __name__ == "__main__":
    raise SystemExit(main())
