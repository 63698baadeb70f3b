"""The batched series SQL on the real engine (decision 0121): each range's points array, as the
engine writes it, reads back as the points of the single-range reference (``routers.sensors.
SERIES_SQL``, JSONEachRow, integral floats made floats): same values, same JSON types, edge values
included (the engine spells a few huge numbers differently from orjson: 1e21 for 1e+21)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from qi.api.routers.sensors import SERIES_FORMAT, SERIES_SQL, _us
from qi.api.series import BATCH_FORMAT, BATCH_SQL, SeriesAnswerError, split_batch
from streams.ids import derived_id

T0 = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
#: values alone in their minute (so a bucket's mean is the value itself whatever the summation
#: order), then dyadic ones (sums exact in any order), then a stretch without scores
EDGE = [100.0, 1e-7, 1e21, -0.0, 123456789.125, -42.0, 1e16, 0.1, 2.5e-300, 7.0]


@pytest.fixture
def sensor_db(platform, topic_prefix):
    wh = platform.warehouse(database="series_" + re.sub(r"\W", "_", topic_prefix).strip("_"))
    wh.start()
    try:
        yield wh
    finally:
        wh.drop()
        wh.close()


def _insert(wh, readings: list[tuple[datetime, float]], scored: set[int], anomalies: set[int]) -> None:
    r_cols = ["twin_id", "sensor_id", "occurred_at", "event_id", "quantity", "value", "unit", "recorded_at", "source"]
    s_cols = ["twin_id", "sensor_id", "occurred_at", "event_id", "reading_event_id", "value", "score", "is_anomaly",
              "model_name", "model_version", "recorded_at"]
    rows, scores = [], []
    for i, (t, v) in enumerate(readings):
        rid = derived_id("series-test-reading", i)
        rows.append(["tw", "s", t, rid, "pressure", v, "kPa", t, "t"])
        if i in scored:
            scores.append(["tw", "s", t, derived_id("series-test-score", i), rid, v, 0.5 + (i % 7) / 16,
                           i in anomalies, "m", "1", t])
    for half in (slice(0, len(rows) // 2), slice(len(rows) // 2, None)):  # two parts, one redelivered
        wh.client.insert(f"{wh.database}.readings", rows[half], column_names=r_cols)
    wh.client.insert(f"{wh.database}.readings", rows[:5], column_names=r_cols)
    wh.client.insert(f"{wh.database}.scores", scores, column_names=s_cols)


def _typed(points: list[dict]) -> list[list[tuple[str, type, object]]]:
    return [[(k, type(v), v) for k, v in p.items()] for p in points]


def _reference(wh, f_us: int, t_us: int, bucket_us: int) -> tuple[bool, list]:
    body = wh.client.raw_query(SERIES_SQL, parameters={"twin": "tw", "sensor": "s", "from_us": f_us, "to_us": t_us,
                                                       "bucket_us": bucket_us}, fmt=SERIES_FORMAT)
    points = [orjson.loads(line) for line in body.splitlines()]
    for p in points:
        for name in ("value", "min", "max", "score"):
            if type(p[name]) is int:
                p[name] = float(p[name])
    return any(p["n"] > 1 for p in points), _typed(points)


def test_each_ranges_points_read_back_as_the_single_range_answer(sensor_db) -> None:
    readings = [(T0 + timedelta(minutes=i, microseconds=7 if i == 3 else 0), v) for i, v in enumerate(EDGE)]
    readings += [(T0 + timedelta(minutes=len(EDGE) + i, seconds=i % 2 * 30), 10.0 + (i % 8) * 0.25)
                 for i in range(300)]
    _insert(sensor_db, readings, scored=set(range(200)), anomalies={4, 150})
    sensor_db.client.database = sensor_db.database
    end = _us(T0 + timedelta(minutes=len(readings) + 5))
    dyadic = _us(T0 + timedelta(minutes=len(EDGE)))  # from here on a bucket's sum is exact in any order
    asks = [(_us(T0), end, 60_000_000),  # a minute a bucket: the edge values alone
            (_us(T0), end, 1), (_us(T0 + timedelta(minutes=3)), _us(T0 + timedelta(minutes=3, seconds=1)), 1),
            (dyadic, end, math.ceil((end - dyadic) / 10)),  # 10 buckets, downsampled
            (_us(T0 + timedelta(minutes=150)), _us(T0 + timedelta(minutes=250)), 61_000_001),
            (_us(T0 - timedelta(days=2)), _us(T0 - timedelta(days=1)), 86_400_000)]  # nothing in it
    params = {"twin": "tw", "sensor": "s", "lo_us": min(a[0] for a in asks), "hi_us": max(a[1] for a in asks),
              "ranges": "[" + ",".join(f"({k},{f},{t},{b})" for k, (f, t, b) in enumerate(asks)) + "]"}
    got = split_batch(sensor_db.client.raw_query(BATCH_SQL, parameters=params, fmt=BATCH_FORMAT), len(asks))
    for ask, (downsampled, points) in zip(asks, got):
        assert (downsampled, _typed(orjson.loads(points))) == _reference(sensor_db, *ask), ask
    minutes = orjson.loads(got[0][1])
    assert [p["min"] for p in minutes[:len(EDGE)]] == EDGE and not got[0][0]
    assert all(type(p[k]) is float for p in minutes for k in ("value", "min", "max"))
    assert b'"value":100.0,' in got[0][1] and b'"min":-0.0,' in got[0][1]  # floats stay floats
    assert minutes[3]["t"] == "2026-11-03T08:03:00.000007Z" and minutes[4]["anomaly"] is True
    assert [p["score"] is None for p in minutes] == [i >= 200 for i in range(len(minutes))]
    assert sum(p["n"] for p in orjson.loads(got[3][1])) == len(readings) - len(EDGE) and got[3][0]
    assert sum(p["n"] for p in minutes) == len(readings)  # the redelivered readings counted once
    assert got[5] == (False, b"[]")


def test_an_answer_not_in_the_batch_form_is_unavailable_not_a_crash() -> None:
    assert split_batch(b"1 f [{}]\n", 2) == [(False, b"[]"), (False, b"[{}]")]
    for bad in (b"0 x []\n", b"5 f []\n", b"zero f []\n", b"0 f {}\n", b"0\n"):
        with pytest.raises(SeriesAnswerError):
            split_batch(bad, 2)
