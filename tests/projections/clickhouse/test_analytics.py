"""docs/analytics.md's worked queries, run as written against projected events, checked
against answers computed from the events themselves."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from projections.clickhouse.projector import ClickHouseProjector
from tests.conftest import ROOT
from tests.projections.clickhouse.world import mixed_events
from tests.streams.helpers import running, wait_for

pytestmark = pytest.mark.stack


def doc_queries() -> dict[str, str]:
    text = (ROOT / "docs" / "analytics.md").read_text()
    return dict(re.findall(r"<!-- query: (\w+) -->\s*```sql\n(.*?)```", text, re.S))


def _naive(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None)


def _fmt(dt: datetime) -> str:
    return _naive(dt).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def projected(platform, warehouse):
    """~4 days of mixed events ending now, projected by the real projector."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = (now - timedelta(days=4)).replace(hour=0, minute=0, second=0)
    events = mixed_events(2400, seed=21, twins=6, start=start, step=timedelta(minutes=5))

    async def go() -> None:
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(events)
        async with running(platform, ClickHouseProjector(warehouse)):
            await wait_for(lambda: warehouse.query("SELECT count() FROM events FINAL").result_rows[0][0]
                           >= len(events), timeout_s=60)
        warehouse.start()

    asyncio.run(go())
    return events, start


def test_the_doc_has_the_four_worked_queries() -> None:
    assert set(doc_queries()) == {"twin_readings", "anomaly_rate", "expiring_next_month", "events_per_hour"}


def test_worked_queries_answer_what_the_events_say(projected, warehouse) -> None:
    events, start = projected
    q = doc_queries()

    # a twin's readings over a time range
    frm, to = start + timedelta(hours=2), start + timedelta(hours=20)
    got = warehouse.query(q["twin_readings"], {"twin": "tw-3", "from": _fmt(frm), "to": _fmt(to)}).result_rows
    want = sorted((e.sensor_id, _naive(e.occurred_at), e.value, e.unit) for e in events
                  if e.event_type == "SensorReading" and e.twin_id == "tw-3" and frm <= e.occurred_at < to)
    assert len(want) > 20 and [tuple(r) for r in got] == want

    # anomaly rate per sensor per day
    scored, anomalies = Counter(), Counter()
    for e in events:
        if e.event_type == "AnomalyScored":
            k = (e.twin_id, e.sensor_id, e.occurred_at.date())
            scored[k] += 1
            anomalies[k] += e.is_anomaly
    rows = warehouse.query(q["anomaly_rate"]).result_rows
    assert [(t, s, d, n, a) for t, s, d, n, a, _ in rows] == [(*k, scored[k], anomalies[k]) for k in sorted(scored)]
    assert sum(anomalies.values()) > 0
    assert all(abs(rate - round(a / n, 4)) < 1e-9 for _, _, _, n, a, rate in rows)

    # certificates expiring next month, neither revoked nor superseded
    today = datetime.now(UTC)
    m0 = (today.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    m1 = (m0 + timedelta(days=32)).replace(day=1)
    gone = {e.certificate_id for e in events if e.event_type in ("CertificateRevoked", "CertificateSuperseded")}
    verdict = {e.certificate_id: e.verdict for e in events if e.event_type == "CertificateValidated"}
    want = sorted(((_naive(e.validity.valid_until), e.certificate_id), e.administrative.item.twin_id,
                   verdict[e.certificate_id]) for e in events if e.event_type == "CertificateIssued"
                  and e.certificate_id not in gone and m0 <= e.validity.valid_until < m1)
    got = warehouse.query(q["expiring_next_month"]).result_rows
    assert len(want) > 0 and gone
    assert [(c, t, x, v) for c, t, x, v in got] == [(c, t, x, v) for (x, c), t, v in want]

    # event counts per type per hour
    frm, to = start + timedelta(days=1), start + timedelta(days=2)
    want = Counter((_naive(e.occurred_at).replace(minute=0, second=0, microsecond=0), e.event_type)
                   for e in events if frm <= e.occurred_at < to)
    got = warehouse.query(q["events_per_hour"], {"from": _fmt(frm), "to": _fmt(to)}).result_rows
    assert {(h, t): n for h, t, n in got} == want and len(want) >= 24
