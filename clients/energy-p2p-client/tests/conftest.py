"""The client's tests run against its source folder (where the integration carries it)."""

import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[3] / "custom_components" / "energy_p2p"
if str(SOURCE) not in sys.path:
    sys.path.insert(0, str(SOURCE))
