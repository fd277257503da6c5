"""A community's membership without writing code: found, invite, join, approve, run.

`operations.py` writes the files of each step (genesis, the registrar's book, the broker's
TLS, logins and ACL, a joining home's configuration and signed membership request);
`service.py` is the part of a running edge controller that sends a home's request and, on
the registrar's home, keeps the inbox and signs what the registrar approves; `commands.py`
is `energy-p2p-edge community ...`. It imports the ledger, the configuration and the app's
node; the API imports it.
"""

from edge_controller.community.errors import CommunityError, Problem
from edge_controller.community.service import CommunityService, as_refusal

__all__ = ["CommunityError", "CommunityService", "Problem", "as_refusal"]
