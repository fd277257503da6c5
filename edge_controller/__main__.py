"""`python -m edge_controller` is the same as the `energy-p2p-edge` command."""

from edge_controller.cli import main

raise SystemExit(main())
