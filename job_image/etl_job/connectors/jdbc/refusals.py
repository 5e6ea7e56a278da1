"""Finding the rows a table refuses without writing row by row: a range of rows is written inside
a savepoint, and a refused range is split in halves until each refused row stands alone, so k
refused rows among n cost about 2·k·log2(n/k) statements. The writing is the caller's
(`attempt`), so the search itself is a fast unit test."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from etl_job.connectors.jdbc.sql import RowRange

R = TypeVar("R")


def find_refused(
    size: int,
    attempt: Callable[[int, int], R | None],
    *,
    whole: R | None = None,
    first_only: bool = False,
) -> list[tuple[int, R]]:
    """Write positions [0, size) by ranges; the positions refused alone, in order, with why.

    `attempt(lo, hi)` writes positions lo..hi-1 inside a savepoint and keeps them, returning
    None, or rolls back to the savepoint and returns the refusal. `whole`: the refusal of the
    whole range, when the caller met it already (then the search starts with its halves).
    `first_only`: stop at the first refused position (the rows written before it stay written:
    the caller rolls the transaction back)."""
    refused: list[tuple[int, R]] = []
    pending: list[tuple[int, int, R | None]] = [(0, size, whole)]
    while pending:
        lo, hi, known = pending.pop()
        if lo >= hi:
            continue
        failure = known if known is not None else attempt(lo, hi)
        if failure is None:
            continue
        if hi - lo == 1:
            refused.append((lo, failure))
            if first_only:
                break
            continue
        middle = (lo + hi) // 2
        pending.append((middle, hi, None))
        pending.append((lo, middle, None))  # popped first: positions are searched in order
    return refused


@dataclass(frozen=True)
class RowSpace:
    """The staged rows' ids (sql.ROW_ID) as positions 0..size-1, in id order. Each partition's ids
    form one range (first, last), with gaps only where rows were refused on the way in, and
    no id lies between two partitions' ranges: so positions lo..hi-1 are exactly the ids of
    one range, and a range of positions is one WHERE on the id."""

    extents: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, extents: Sequence[Sequence[str | int | None]]) -> RowSpace:
        """From the rows of sql.row_extents: (first id, last id) per partition."""
        found = tuple(
            (int(first), int(last)) for first, last in extents if first is not None and last is not None
        )
        return cls(tuple(sorted(found)))

    @property
    def _starts(self) -> list[int]:
        starts, position = [], 0
        for first, last in self.extents:
            starts.append(position)
            position += last - first + 1
        return starts

    @property
    def size(self) -> int:
        return sum(last - first + 1 for first, last in self.extents)

    def id_at(self, position: int) -> int:
        if not 0 <= position < self.size:
            raise IndexError(position)
        starts = self._starts
        index = bisect.bisect_right(starts, position) - 1
        return self.extents[index][0] + position - starts[index]

    def ids(self, lo: int, hi: int) -> RowRange:
        """The ids of positions lo..hi-1 (hi > lo), as a range: first included, end excluded."""
        return self.id_at(lo), self.id_at(hi - 1) + 1
