"""Finding refused rows by ranges: which ranges are tried, and what is found, exactly."""

from __future__ import annotations

import pytest

from etl_job.connectors.jdbc.refusals import RowSpace, find_refused


class Table:
    """Writes ranges of positions, refusing those in `bad`, and records each attempt."""

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad
        self.written: list[int] = []
        self.attempts: list[tuple[int, int]] = []

    def attempt(self, lo: int, hi: int) -> str | None:
        self.attempts.append((lo, hi))
        refused = sorted(self.bad & set(range(lo, hi)))
        if refused:
            return f"refused {refused[0]}"
        self.written.extend(range(lo, hi))
        return None


def test_nothing_refused_is_one_attempt() -> None:
    table = Table(set())
    assert find_refused(1000, table.attempt) == []
    assert table.attempts == [(0, 1000)]


def test_each_refused_row_is_found_alone_and_every_other_row_written_once() -> None:
    table = Table({3, 517, 518, 999})
    found = find_refused(1000, table.attempt)
    assert found == [(3, "refused 3"), (517, "refused 517"), (518, "refused 518"), (999, "refused 999")]
    assert sorted(table.written) == [i for i in range(1000) if i not in table.bad]
    # About 2 log2(n) attempts per refused row, not one per row.
    assert len(table.attempts) <= 4 * 2 * 10


def test_a_whole_range_known_refused_is_not_tried_again() -> None:
    table = Table({7})
    assert find_refused(8, table.attempt, whole="refused 7") == [(7, "refused 7")]
    assert (0, 8) not in table.attempts
    assert find_refused(1, Table({0}).attempt, whole="known") == [(0, "known")]


def test_the_first_refused_row_is_found_in_order_and_the_search_stops() -> None:
    table = Table({40, 700})
    assert find_refused(1000, table.attempt, first_only=True) == [(40, "refused 40")]
    assert all(lo < 700 for lo, _ in table.attempts[1:])


def test_a_failure_that_is_no_refusal_ends_the_search() -> None:
    def attempt(lo: int, hi: int) -> str | None:
        raise ConnectionError("server went away")

    with pytest.raises(ConnectionError):
        find_refused(10, attempt)


def test_positions_map_to_row_ids_across_partitions_and_gaps() -> None:
    shift = 1 << 33
    # Partition 0 staged ids 0..9, partition 2 staged 2<<33 + 0..4 (partition 1 had no rows).
    space = RowSpace.of([(str(2 * shift), str(2 * shift + 4)), ("0", "9")])
    assert space.size == 15
    assert space.id_at(0) == 0 and space.id_at(9) == 9 and space.id_at(10) == 2 * shift
    assert space.ids(0, 15) == (0, 2 * shift + 5)
    assert space.ids(8, 12) == (8, 2 * shift + 2)
    assert space.ids(10, 11) == (2 * shift, 2 * shift + 1)
    with pytest.raises(IndexError):
        space.id_at(15)
    assert RowSpace.of([(None, None)]).size == 0
