"""The block index and the best chain by height, kept in memory only where forks are decided.

A node decides forks and follows the chain with the blocks above its final height: no
block at or below it is ever reorganised away (`chain.py`), so their index entries and
best-chain hashes need not stay in memory. `BlockIndex` (hash → `IndexEntry`) and
`MainChain` (height → hash) keep in memory the entries from a floor up (the final height
once the node has one) and read the rest from storage when asked, through a small cache;
what they answer does not depend on where an entry lives. Without a store behind them
(`MemoryStore`: tests, simulations, benchmarks) they keep everything, as a dict and a
list would.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, overload

from .consensus import IndexEntry

# Entries and hashes below the floor kept after a read: the walks of a start, a sync
# request or a pruning pass read a few hundred at most.
COLD_ENTRIES = 1_024
COLD_HASHES = 1_024
# Heights of the best chain read from storage at once when iterating below the floor.
PAGE = 1_024


class IndexSource(Protocol):
    """What storage answers for the index below its floor."""

    def index_entry(self, block_hash: str) -> IndexEntry | None: ...
    def count_blocks_below(self, height: int) -> int: ...
    def block_hashes_below(self, height: int) -> Iterator[str]: ...


class BlockIndex(Mapping[str, IndexEntry]):
    """Every block header a node accepted, on any branch: those at or above `floor` (and
    genesis) in memory, the others read from `source` on demand (none without one)."""

    def __init__(self, source: IndexSource | None = None) -> None:
        self.source = source
        self._hot: dict[str, IndexEntry] = {}
        # Hashes in memory by height, so moving the floor up touches only what it drops.
        self._heights: dict[int, list[str]] = {}
        self._low = 0
        # Each in-memory block's children in memory (marking a branch invalid walks them).
        self.children: dict[str, list[str]] = {}
        self._cold: OrderedDict[str, IndexEntry] = OrderedDict()
        self.floor = 0

    def add(self, entry: IndexEntry) -> None:
        """Index a block (in memory, whatever its height, until `forget_below` drops it)."""
        self._hot[entry.hash] = entry
        self._cold.pop(entry.hash, None)
        self.children.setdefault(entry.prev, []).append(entry.hash)
        if self.source is not None and entry.height > 0:
            self._heights.setdefault(entry.height, []).append(entry.hash)
            self._low = min(self._low, entry.height)

    def __getitem__(self, block_hash: str) -> IndexEntry:
        entry = self._hot.get(block_hash)
        if entry is not None:
            return entry
        if self.source is None:
            raise KeyError(block_hash)
        entry = self._cold.get(block_hash)
        if entry is not None:
            self._cold.move_to_end(block_hash)
            return entry
        entry = self.source.index_entry(block_hash)
        if entry is None:
            raise KeyError(block_hash)
        self._cold[block_hash] = entry
        if len(self._cold) > COLD_ENTRIES:
            self._cold.popitem(last=False)
        return entry

    def __contains__(self, block_hash: object) -> bool:
        if block_hash in self._hot:
            return True
        if not isinstance(block_hash, str) or self.source is None:
            return False
        return self.get(block_hash) is not None

    def __len__(self) -> int:
        below = self.source.count_blocks_below(self.floor) if self.source is not None else 0
        return len(self._hot) + below

    def __iter__(self) -> Iterator[str]:
        yield from list(self._hot)
        if self.source is not None:
            yield from self.source.block_hashes_below(self.floor)

    def forget_below(self, height: int) -> list[str]:
        """Drop from memory the entries below `height` (they are in storage: the node
        never follows a block below its final height); returns their hashes."""
        if self.source is None or height <= self.floor:
            return []
        self.floor = height
        if height - self._low > len(self._heights):
            drop: Iterable[int] = sorted(h for h in self._heights if h < height)
        else:
            drop = range(self._low, height)
        dropped = []
        for at in drop:
            for block_hash in self._heights.pop(at, ()):
                entry = self._hot.pop(block_hash)
                self.children.pop(block_hash, None)
                siblings = self.children.get(entry.prev)
                if siblings is not None:
                    siblings.remove(block_hash)
                    if not siblings:
                        del self.children[entry.prev]
                dropped.append(block_hash)
        self._low = height
        return dropped

    def in_memory(self) -> int:
        """Entries held in memory (those above the floor, genesis, and the cache)."""
        return len(self._hot) + len(self._cold)

    def holds(self, block_hash: str) -> bool:
        """Whether `block_hash`'s entry is in memory now (a lookup reads no storage)."""
        return block_hash in self._hot or block_hash in self._cold


class MainChain(Sequence[str]):
    """The best chain's block hashes by height: those from `start` up in memory, those
    below read from storage on demand (`source(low, high)`: the hashes at heights `low`
    up to `high`, excluded). Without a source it is a list."""

    def __init__(
        self, genesis_hash: str, source: Callable[[int, int], list[str]] | None = None
    ) -> None:
        self.source = source
        self._genesis = genesis_hash
        self.start = 0
        self._top = [genesis_hash]
        self._cold: OrderedDict[int, str] = OrderedDict()

    def reset(self, start: int, hashes: list[str]) -> None:
        """The chain as storage holds it: `hashes` from height `start` on (at least 1; the
        heights between genesis and it are read on demand)."""
        self._cold.clear()
        if start <= 1 or self.source is None:
            self.start, self._top = 0, [self._genesis, *hashes]
        else:
            self.start, self._top = start, list(hashes)

    def widen(self, start: int, hashes: list[str]) -> None:
        """Hold in memory the hashes from `start` on too (`hashes`: those up to the present
        start, excluded)."""
        if start >= self.start:
            return
        if start <= 1:
            self._top = [self._genesis, *hashes, *self._top]
            self.start = 0
        else:
            self._top = [*hashes, *self._top]
            self.start = start

    def forget_below(self, height: int) -> None:
        """Drop from memory the hashes below `height` (stored: the best chain is written
        before it is changed in memory)."""
        height = min(height, len(self) - 1)
        if self.source is None or height <= self.start:
            return
        del self._top[: height - self.start]
        self.start = height

    def __len__(self) -> int:
        return self.start + len(self._top)

    @overload
    def __getitem__(self, key: int) -> str: ...
    @overload
    def __getitem__(self, key: slice) -> list[str]: ...
    def __getitem__(self, key: int | slice) -> str | list[str]:
        if isinstance(key, slice):
            low, high, step = key.indices(len(self))
            if step != 1:
                return [self[h] for h in range(low, high, step)]
            return self._range(low, high)
        height = key + len(self) if key < 0 else key
        if not 0 <= height < len(self):
            raise IndexError(f"height {key} is not on the best chain (height {len(self) - 1})")
        if height >= self.start:
            return self._top[height - self.start]
        if height == 0:
            return self._genesis
        cached = self._cold.get(height)
        if cached is not None:
            self._cold.move_to_end(height)
            return cached
        assert self.source is not None  # below start only with a source
        (block_hash,) = self.source(height, height + 1)
        self._cold[height] = block_hash
        if len(self._cold) > COLD_HASHES:
            self._cold.popitem(last=False)
        return block_hash

    def _range(self, low: int, high: int) -> list[str]:
        if high <= low:
            return []
        found: list[str] = []
        if low < self.start:
            assert self.source is not None
            if low == 0:
                found.append(self._genesis)
            cold_high = min(high, self.start)
            found.extend(self.source(max(low, 1), cold_high))
            low = cold_high
        found.extend(self._top[low - self.start : high - self.start])
        return found

    def __iter__(self) -> Iterator[str]:
        for low in range(0, self.start, PAGE):
            yield from self._range(low, min(low + PAGE, self.start))
        yield from list(self._top)

    def append(self, block_hash: str) -> None:
        self._top.append(block_hash)

    def extend(self, hashes: Iterable[str]) -> None:
        self._top.extend(hashes)

    def __delitem__(self, key: slice) -> None:
        """`del main[height:]`: the chain cut back to below `height` (a reorganisation)."""
        low, high, step = key.indices(len(self))
        if step != 1 or high != len(self):
            raise ValueError("only the top of the best chain can be removed")
        if low == 0:
            raise ValueError("genesis stays on the best chain")
        if low >= self.start:
            del self._top[low - self.start :]
            return
        self._top, self.start = [], low
        for height in [h for h in self._cold if h >= low]:
            del self._cold[height]

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def in_memory(self) -> int:
        """Hashes held in memory (from `start` up, and the cache)."""
        return len(self._top) + len(self._cold)
