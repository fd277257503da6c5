"""The community's energy ledger: a pure state machine over signed records, plus storage.

This package never imports the transport, the devices, the API or the market: given the
same blocks every node reaches the same state, and another consensus engine could host it.

Everything outside the package imports from here: the chain and its storage, records and
blocks, the state's rows, and the read API of `queries` (the figures the rules work with).
"""

from .block import Block, Header, parse_block, record_root, seal
from .chain import BlockBudget, BlockResult, Ledger, genesis_entry
from .checkpoint import checkpoint_due, state_digest
from .consensus import in_turn_sealer
from .errors import Reason, Rejected
from .genesis import (
    DEFAULT_FORGET_AFTER_MS,
    FIRST_RULES,
    FOURTH_RULES,
    LATEST_RULES,
    MAX_BLOCK_BYTES,
    MAX_FORGET_AFTER_MS,
    MIN_FORGET_AFTER_MS,
    THIRD_RULES,
    TRANSPORT_MESSAGE_BYTES,
    Consensus,
    Genesis,
)
from .integrity import DamagedStore, StorageError
from .keys import KeyPair, Verifier, account_id
from .parallel import SignaturePool
from .prune import HistorySettings, prune_history
from .queries import (
    allocated_export,
    allocated_import,
    bidding_open,
    cost_of,
    energy_of,
    held_energy_wh,
    metered_export,
    minimum_bid,
    offer_of,
    power_holds,
    reading_most_wh,
    trade_power_w,
)
from .records import Record, parse_record, sign_record, signing_message
from .sealers import MAX_SEALERS
from .snapshot import JoinStatus, SnapshotJoin, keep_snapshots
from .state import Acceptance, Account, Commitments, Member, Offer, Resource, State, Trade
from .store import MemoryStore, SqliteStore, StoreMismatch, private_file
from .sync import BLOCKS_FRAME_BYTES, MAX_BLOCKS, Outgoing, SyncNode, block_limit
from .trade_history import account_trades, trades_starting
from .verify import ChainFileError, StoredChain

__all__ = [
    "BLOCKS_FRAME_BYTES",
    "DEFAULT_FORGET_AFTER_MS",
    "FIRST_RULES",
    "FOURTH_RULES",
    "LATEST_RULES",
    "MAX_BLOCKS",
    "MAX_BLOCK_BYTES",
    "MAX_FORGET_AFTER_MS",
    "MAX_SEALERS",
    "MIN_FORGET_AFTER_MS",
    "THIRD_RULES",
    "TRANSPORT_MESSAGE_BYTES",
    "Acceptance",
    "Account",
    "Block",
    "BlockBudget",
    "BlockResult",
    "ChainFileError",
    "Commitments",
    "Consensus",
    "DamagedStore",
    "Genesis",
    "Header",
    "HistorySettings",
    "JoinStatus",
    "KeyPair",
    "Ledger",
    "Member",
    "MemoryStore",
    "Offer",
    "Outgoing",
    "Reason",
    "Record",
    "Rejected",
    "Resource",
    "SignaturePool",
    "SnapshotJoin",
    "SqliteStore",
    "State",
    "StorageError",
    "StoreMismatch",
    "StoredChain",
    "SyncNode",
    "Trade",
    "Verifier",
    "account_id",
    "account_trades",
    "allocated_export",
    "allocated_import",
    "bidding_open",
    "block_limit",
    "checkpoint_due",
    "cost_of",
    "energy_of",
    "genesis_entry",
    "held_energy_wh",
    "in_turn_sealer",
    "keep_snapshots",
    "metered_export",
    "minimum_bid",
    "offer_of",
    "parse_block",
    "parse_record",
    "power_holds",
    "private_file",
    "prune_history",
    "reading_most_wh",
    "record_root",
    "seal",
    "sign_record",
    "signing_message",
    "state_digest",
    "trade_power_w",
    "trades_starting",
]
