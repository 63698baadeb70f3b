"""The certificate agent's input guard (pure logic; the crash test drives it for real)."""

from __future__ import annotations

from streams.validation.progress import InputProgress


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def judged(guard: InputProgress, partition: int, offsets) -> list[tuple[int, bool, int | None]]:
    out = []
    for o in offsets:
        ok, rewind = guard.admit(partition, o)
        if ok:
            guard.done(partition, o)
        out.append((o, ok, rewind))
    return out


def test_a_fresh_partition_starts_anywhere_and_in_order_records_pass() -> None:
    guard = InputProgress({})
    assert [ok for _, ok, _ in judged(guard, 0, [5, 6, 7])] == [True, True, True]
    assert guard.position(0) == 8


def test_a_gap_rewinds_once_and_drops_until_the_position_comes_back() -> None:
    table: dict[bytes, bytes] = {}
    guard = InputProgress(table)
    judged(guard, 1, [0, 1, 2])
    # the worker restarts (table recovered) and faust starts it past offset 3
    guard = InputProgress(table)
    assert judged(guard, 1, [9, 10]) == [(9, False, 3), (10, False, None)]
    assert judged(guard, 1, [3, 4, 9, 10]) == [(3, True, None), (4, True, None), (9, False, 5), (10, False, None)]
    assert judged(guard, 1, range(5, 11))[-1] == (10, True, None)
    assert guard.position(1) == 11 and guard.position(0) is None


def test_redeliveries_are_judged_again_and_never_move_the_position_back() -> None:
    guard = InputProgress({})
    judged(guard, 0, range(10))
    assert judged(guard, 0, [4, 5]) == [(4, True, None), (5, True, None)]
    assert guard.position(0) == 10


def test_a_rewind_is_repeated_until_its_record_comes_back_then_a_gap_is_accepted() -> None:
    clock = Clock()
    guard = InputProgress({}, clock=clock)
    judged(guard, 0, [0])
    assert guard.admit(0, 50) == (False, 1)
    assert guard.due({0}) == []                       # not yet due
    repeats = []
    for step in range(1, 30):
        clock.t = step * InputProgress.RETRY_AFTER_S
        repeats += guard.due({0})
    assert repeats == [(0, 1)] * (InputProgress.MAX_TRIES - 1)
    assert guard.admit(0, 51) == (True, None)         # given up on, loudly
    assert guard.due({0}) == []


def test_the_record_at_the_position_ends_the_rewind() -> None:
    clock = Clock()
    guard = InputProgress({}, clock=clock)
    judged(guard, 0, [0])
    guard.admit(0, 7)
    assert judged(guard, 0, [1]) == [(1, True, None)]
    clock.t = 100
    assert guard.due({0}) == []


def test_rewinds_of_partitions_moved_elsewhere_are_forgotten() -> None:
    clock = Clock()
    guard = InputProgress({}, clock=clock)
    judged(guard, 3, [0])
    guard.admit(3, 9)
    clock.t = 100
    assert guard.due({0, 1}) == []
    assert guard.due({3}) == []


def test_a_seeded_partition_treats_a_first_start_past_the_seed_as_a_gap() -> None:
    guard = InputProgress({})
    guard.seed(0, 4)
    assert guard.admit(0, 9) == (False, 4)
    guard.seed(0, 100)                                # a position once known is never re-seeded
    assert guard.position(0) == 4


def test_a_start_past_the_position_rewinds_before_any_record_arrives() -> None:
    # a worker killed while rewinding had acked the dropped records: the group's committed
    # offset is past the position, and at the log end no record comes to reveal the gap
    table: dict[bytes, bytes] = {}
    judged(InputProgress(table), 0, range(107))
    guard = InputProgress(table)
    assert guard.check_start(0, 107) is None          # where it left off: nothing to do
    assert guard.check_start(0, 131) == 107
    assert guard.check_start(0, 131) is None          # already on its way back
    assert judged(guard, 0, [131, 107, 108]) == [(131, False, None), (107, True, None), (108, True, None)]
    assert guard.position(0) == 109


def test_a_start_check_is_repeated_like_any_rewind_and_needs_a_position() -> None:
    clock = Clock()
    guard = InputProgress({}, clock=clock)
    assert guard.check_start(1, 40) is None           # no position yet: the first record seeds it
    judged(guard, 1, [0, 1])
    assert guard.check_start(1, 40) == 2
    clock.t = InputProgress.RETRY_AFTER_S
    assert guard.due({1}) == [(1, 2)]
