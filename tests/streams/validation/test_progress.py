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


def test_a_gap_that_never_fills_is_rewound_a_bounded_number_of_times_then_accepted() -> None:
    clock = Clock()
    guard = InputProgress({}, clock=clock)
    judged(guard, 0, [0])
    rewinds = []
    for step in range(6):
        clock.t = step * (InputProgress.RETRY_AFTER_S + 1)
        rewinds.append(guard.admit(0, 50))
    assert rewinds[:3] == [(False, 1)] * 3
    assert rewinds[3] == (True, None)
