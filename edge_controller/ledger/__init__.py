"""The community's energy ledger: a pure state machine over signed records, plus storage.

This package never imports the transport, the devices, the API or the market: given the
same blocks every node reaches the same state, and another consensus engine could host it.
"""

from .block import Block, Header, parse_block
from .chain import BlockResult, Ledger
from .errors import Reason, Rejected
from .genesis import Consensus, Genesis
from .keys import KeyPair, Verifier, account_id
from .records import Record, parse_record, sign_record
from .state import State
from .store import MemoryStore, SqliteStore

__all__ = [
    "Block",
    "BlockResult",
    "Consensus",
    "Genesis",
    "Header",
    "KeyPair",
    "Ledger",
    "MemoryStore",
    "Reason",
    "Record",
    "Rejected",
    "SqliteStore",
    "State",
    "Verifier",
    "account_id",
    "parse_block",
    "parse_record",
    "sign_record",
]
