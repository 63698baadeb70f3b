"""The scoring worker: a batch-runner :class:`~streams.processor.Processor`.

Every SensorReading gets an AnomalyScored (``event_id`` = uuid5 of the reading's id); the first
reading of an alert episode gets an AnomalyDetected RAISED and the reading that ends it a CLEARED
(``event_id`` = uuid5 of that reading's id and the state). Readings that are not finite, and
records of another type on the readings topic, are dead-lettered as VALIDATION_FAILED.

State: one :class:`~streams.anomaly.scorer.Scorer` per input partition, snapshotted with the next
offset it covers (docs/decisions/0030). On assignment the snapshot is loaded and the runner seeks
to its offset (offset 0 when there is none: the partition is rebuilt from the log), so outputs
re-emitted after a crash are the same events with the same ids.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import numpy as np
import structlog
from aiokafka import TopicPartition

from events.publisher import OutgoingRecord
from events.reader import ConsumedRecord
from events.serde import Serde
from events.topics import TopicNames
from streams.anomaly.config import ScorerConfig
from streams.anomaly.scorer import ALERT_NONE, ALERT_RAISED, BatchScores, Scorer, score_batches
from streams.anomaly.snapshots import SnapshotStore
from streams.anomaly.wire import ScoredEncoder, layout_is_known
from streams.ids import derived_id, derived_ids
from streams.processor import BatchResult, Poison, Processor

log = structlog.get_logger(__name__)


class ScoreProcessor(Processor):
    name = "score"
    families = ("readings",)
    decode = "plain"

    def __init__(self, serde: Serde, topics: TopicNames, snapshots: SnapshotStore, *,
                 config: ScorerConfig | None = None, snapshot_every_batches: int = 20,
                 snapshot_every_s: float = 5.0) -> None:
        self._serde = serde
        self._topics = topics
        self._snapshots = snapshots
        self._config = config or ScorerConfig()
        self._every_batches = snapshot_every_batches
        self._every_s = snapshot_every_s
        self._scorers: dict[TopicPartition, Scorer] = {}
        self._next: dict[TopicPartition, int] = {}
        self._dirty: set[TopicPartition] = set()
        self._batches = 0
        self._last_snapshot = time.monotonic()
        self._encoder: ScoredEncoder | None = None

    def _scored_encoder(self, scorer: Scorer) -> ScoredEncoder | None:
        """The batch encoder of AnomalyScored, or None if the writer schema is not the layout it knows."""
        if self._encoder is None:
            header, schema = self._serde.writer_of("AnomalyScored")
            if not layout_is_known(schema):
                log.warning("score.encoder_fallback", reason="AnomalyScored schema differs from streams/anomaly/wire.py")
                return None
            self._encoder = ScoredEncoder(header, source=self.name, model_name=scorer.model_name,
                                          model_version=scorer.model_version)
        return self._encoder

    async def start(self) -> None:
        await self._snapshots.start()

    async def close(self) -> None:
        await self._snapshots.close()

    async def assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        stored = await self._snapshots.load(sorted(partitions))
        seeks = {}
        for tp in partitions:
            offset, scorer = stored.get(tp, (0, Scorer(self._config)))
            self._scorers[tp] = scorer
            self._next[tp] = offset
            seeks[tp] = offset
        log.info("score.assigned", restored=len(stored), rebuilt=len(partitions) - len(stored))
        return seeks

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self._save([tp for tp in partitions if tp in self._dirty])
        for tp in partitions:
            self._scorers.pop(tp, None)
            self._next.pop(tp, None)
            self._dirty.discard(tp)

    async def flush(self) -> None:
        self._batches += 1
        if self._batches >= self._every_batches or time.monotonic() - self._last_snapshot >= self._every_s:
            await self._save(list(self._dirty))

    async def _save(self, tps: list[TopicPartition]) -> None:
        await self._snapshots.save({tp: (self._next[tp], self._scorers[tp]) for tp in tps if tp in self._scorers})
        self._dirty.difference_update(tps)
        self._batches = 0
        self._last_snapshot = time.monotonic()

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        out = BatchResult()
        by_tp: dict[tuple[str, int], list[ConsumedRecord]] = {}
        for r in records:
            by_tp.setdefault((r.topic, r.partition), []).append(r)
        now = int(datetime.now(UTC).timestamp() * 1_000_000)
        todo: list[tuple[Scorer, list[ConsumedRecord]]] = []
        for key, recs in by_tp.items():
            tp = TopicPartition(*key)
            scorer = self._scorers.get(tp)
            if scorer is None:
                # Fetched while the partition was being (re)assigned (`assigned` awaits Redis while
                # the fetcher already reads from the committed offset), or after it was taken away.
                # Not applied: the runner seeks this partition to its snapshot's offset.
                log.warning("score.skipped_unassigned", partition=f"{tp.topic}/{tp.partition}", records=len(recs))
                continue
            # A fetch that raced a rebalance can hand over records this state has already applied
            # (the runner then seeks back to the snapshot's offset and they come again): apply
            # each offset once, so the state never advances twice over the same reading.
            done = self._next[tp]
            if recs[0].offset < done:
                recs = [r for r in recs if r.offset >= done]
                if not recs:
                    continue
            elif recs[0].offset > done:  # offsets may have gaps; a warning, since it should be rare
                log.warning("score.offset_gap", partition=f"{tp.topic}/{tp.partition}", expected=done,
                            got=recs[0].offset)
            good = []
            for r in recs:
                d = r.decoded
                if d.event_type != "SensorReading":
                    out.poison.append(Poison(r, "VALIDATION_FAILED",
                                             f"a {d.event_type} on the readings topic, expected SensorReading"))
                elif not math.isfinite(d.record["value"]):
                    out.poison.append(Poison(r, "VALIDATION_FAILED", f"value is {d.record['value']}"))
                else:
                    good.append(r)
            self._next[tp] = recs[-1].offset + 1
            self._dirty.add(tp)
            if good:
                todo.append((scorer, good))
        # every partition's readings scored in one call (the recurrences of all their sensors
        # share numpy rounds: docs/decisions/0033), outputs partition by partition as before
        inputs, decoded = [], []
        for scorer, good in todo:
            rows = [r.decoded.record for r in good]
            decoded.append(rows)
            keys = [f"{x['twin_id']}/{x['sensor_id']}" for x in rows]
            times = np.fromiter((x["occurred_at"] for x in rows), np.float64, len(rows)) / 1e6
            values = np.fromiter((x["value"] for x in rows), np.float64, len(rows))
            inputs.append((scorer, keys, times, values))
        for (scorer, good), rows, res in zip(todo, decoded, score_batches(inputs)):
            out.outputs.extend(self._outputs(scorer, good, rows, res, now))
        return out

    def _outputs(self, scorer: Scorer, recs: list[ConsumedRecord], rows: list[dict], res: BatchScores,
                 now: int) -> list[OutgoingRecord]:
        name, version, threshold = scorer.model_name, scorer.model_version, scorer.threshold
        t_scores, t_alerts = self._topics.topic("scores"), self._topics.topic("alerts")
        rids = [x["event_id"] for x in rows]
        eids = derived_ids("score", rids)
        encoder = self._scored_encoder(scorer)
        if encoder is not None:
            blobs = encoder.encode(eids, rows, now, res.score, res.is_anomaly)
        else:  # pragma: no cover - only with a changed AnomalyScored schema
            blobs = [self._serde.encode("AnomalyScored", self._scored_record(x, eid, now, sc, flag, scorer))
                      for x, eid, sc, flag in zip(rows, eids, res.score.tolist(), res.is_anomaly.tolist())]
        out = [OutgoingRecord(t_scores, r.key, v, eid) for r, v, eid in zip(recs, blobs, eids)]
        raised = np.flatnonzero(res.alert != ALERT_NONE)
        if len(raised) == 0:
            return out
        # Alerts are rare: built and encoded record by record, placed right after their score.
        scores = res.score.tolist()
        enc = self._serde.encode
        for i in raised[::-1].tolist():
            r, x, sc = recs[i], rows[i], scores[i]
            rid = rids[i]
            state = "RAISED" if res.alert[i] == ALERT_RAISED else "CLEARED"
            aid = str(derived_id("alert", rid, state))
            out.insert(i + 1, OutgoingRecord(t_alerts, r.key, enc("AnomalyDetected", {
                "event_id": aid, "event_type": "AnomalyDetected", "occurred_at": x["occurred_at"],
                "recorded_at": now, "source": self.name, "correlation_id": x.get("correlation_id"),
                "causation_id": rid, "twin_id": x["twin_id"], "sensor_id": x["sensor_id"],
                "state": state, "score": sc, "threshold": threshold, "reading_event_id": rid,
                "model_name": name, "model_version": version,
            }), aid))
        return out

    def _scored_record(self, x: dict, eid: str, now: int, sc: float, flag: bool, scorer: Scorer) -> dict:
        return {
            "event_id": eid, "event_type": "AnomalyScored", "occurred_at": x["occurred_at"],
            "recorded_at": now, "source": self.name, "correlation_id": x.get("correlation_id"),
            "causation_id": x["event_id"], "twin_id": x["twin_id"], "sensor_id": x["sensor_id"],
            "reading_event_id": x["event_id"], "value": x["value"], "score": sc, "is_anomaly": flag,
            "model_name": scorer.model_name, "model_version": scorer.model_version,
        }
