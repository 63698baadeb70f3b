"""Where the certificate agent is in each input partition, kept in a faust Table of its own.

faust decides where a (re)started worker begins reading from the group's committed offsets, and
on the embedded broker that start was seen past records nobody had judged (after a SIGKILL and
rebalance, docs/decisions/0015-validation-progress-guard.md). This guard does not trust it: after
judging the record at offset ``o`` of partition ``p`` the agent writes ``o + 1`` under ``p`` into
a changelog-backed Table (recovered with the partition, wherever it moves). A record that arrives
beyond that position means a gap: the agent rewinds the partition to the position and drops the
records that arrive before it comes back; records at or below the position are redeliveries and
are judged again (verdict ids derive from their inputs, so duplicates are identical).
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


@dataclass
class _Rewind:
    to: int
    at: float
    tries: int


class InputProgress:
    """``admit`` each certificate record before judging it; ``done`` after.

    ``table`` maps ``b"p<partition>"`` to the next offset to judge (ASCII digits).
    """

    RETRY_AFTER_S = 2.0    # rewind again if the record at the position has not come back by then
    MAX_TRIES = 10         # then accept the gap (e.g. the records were deleted by retention) loudly

    def __init__(self, table: MutableMapping[bytes, bytes], clock: Callable[[], float] = time.monotonic) -> None:
        self._table = table
        self._clock = clock
        self._rewinds: dict[int, _Rewind] = {}

    @staticmethod
    def key(partition: int) -> bytes:
        return b"p%d" % partition

    def position(self, partition: int) -> int | None:
        raw = self._table.get(self.key(partition))
        return int(raw) if raw is not None else None

    def admit(self, partition: int, offset: int) -> tuple[bool, int | None]:
        """(judge it?, offset to rewind the partition to now, or None)."""
        expected = self.position(partition)
        if expected is None or offset <= expected:
            if offset == expected:
                self._rewinds.pop(partition, None)
            return True, None
        rewind = self._rewinds.get(partition)
        if rewind is not None and rewind.to == expected:
            if rewind.tries < self.MAX_TRIES:
                return False, None           # on its way back: drop what was fetched before the rewind
            log.error("validation.input_gap_accepted", partition=partition, missing_from=expected,
                      missing_to=offset - 1, tries=rewind.tries)
            self._rewinds.pop(partition, None)
            return True, None
        return False, self._begin_rewind(partition, expected, offset)

    def check_start(self, partition: int, start: int) -> int | None:
        """Where the reading of a partition (re)starts, ``start``, checked once per assignment.
        Past this app's position is a gap that no record may come to reveal: the records
        dropped while rewinding are acked, so the group's committed offset can be past the
        position, a restarted worker starts there, and at the log end nothing arrives for
        ``admit`` to compare. The rewind begins now; returns the offset to seek to, or None."""
        expected = self.position(partition)
        if expected is None or start <= expected:
            return None
        rewind = self._rewinds.get(partition)
        if rewind is not None and rewind.to == expected:
            return None                      # already on its way back
        return self._begin_rewind(partition, expected, start, at="start")

    def _begin_rewind(self, partition: int, expected: int, got: int, **where: str) -> int:
        self._rewinds[partition] = _Rewind(expected, self._clock(), 1)
        log.warning("validation.input_gap", partition=partition, expected=expected, got=got, **where)
        return expected

    def due(self, assigned: set[int]) -> list[tuple[int, int]]:
        """Rewinds to repeat now (a later seek, e.g. faust's own after a rebalance, can undo one):
        (partition, offset) for each assigned partition whose position has not come back in
        ``RETRY_AFTER_S``. Rewinds of partitions no longer assigned are forgotten."""
        now, again = self._clock(), []
        for partition, rewind in list(self._rewinds.items()):
            if partition not in assigned:
                del self._rewinds[partition]
            elif now - rewind.at >= self.RETRY_AFTER_S and rewind.tries < self.MAX_TRIES:
                rewind.at, rewind.tries = now, rewind.tries + 1
                again.append((partition, rewind.to))
        return again

    def seed(self, partition: int, offset: int) -> None:
        """Where a partition starts that this app has no position for yet (its group's committed
        offset, or the log start): a first start past it is a gap too."""
        if self.position(partition) is None:
            self._table[self.key(partition)] = b"%d" % offset

    def done(self, partition: int, offset: int) -> None:
        """The record at ``offset`` was judged (its outputs handed to the producer)."""
        if offset + 1 > (self.position(partition) or -1):
            self._table[self.key(partition)] = b"%d" % (offset + 1)
