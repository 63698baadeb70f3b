import json

from events.jsonl import parse_lines

GOOD_TWIN = {"event_type": "TwinRegistered", "occurred_at": "2026-11-01T10:00:00Z", "aggregate_version": 1,
             "twin_id": "tw-1", "kind": "gauge", "name": "G1"}
GOOD_READING = {"event_type": "SensorReading", "occurred_at": "2026-11-01T10:00:00+01:00", "twin_id": "tw-1",
                "sensor_id": "s1", "quantity": "pressure", "value": 1.5, "unit": "kPa"}


def _lines(*objs):
    return [o if isinstance(o, str) else json.dumps(o) for o in objs]


def test_each_bad_line_is_named_with_field_and_reason():
    lines = _lines(
        GOOD_TWIN,
        {**GOOD_READING, "value": "high"},
        "{oops",
        {"event_type": "Nope"},
        "",
        {**GOOD_READING, "occurred_at": "2026-11-01T10:00:00"},
        {k: v for k, v in GOOD_TWIN.items() if k != "name"},
        [1, 2],
        {**GOOD_READING, "surprise": 1},
        GOOD_READING,
    )
    parsed = parse_lines(lines, default_source="test")
    assert [n for n, _ in parsed.events] == [1, 10]
    errors = {e.line: (e.field, e.reason) for e in parsed.errors}
    assert errors[2][0] == "value" and "number" in errors[2][1]
    assert errors[3][0] is None and "not valid JSON" in errors[3][1]
    assert errors[4] == ("event_type", "unknown event type 'Nope'")
    assert errors[6][0] == "occurred_at" and "timezone" in errors[6][1]
    assert errors[7][0] == "name" and "required" in errors[7][1].lower()
    assert errors[8][0] is None and "JSON object" in errors[8][1]
    assert errors[9][0] == "surprise"
    assert 5 not in errors  # blank lines are skipped, not errors


def test_missing_event_ids_are_derived_from_content():
    a = parse_lines(_lines(GOOD_READING), default_source="x").events[0][1]
    b = parse_lines(_lines(GOOD_READING), default_source="x").events[0][1]
    c = parse_lines(_lines({**GOOD_READING, "value": 2.0}), default_source="x").events[0][1]
    assert a.event_id == b.event_id != c.event_id
    assert a.source == "x"
    explicit = parse_lines(_lines({**GOOD_READING, "event_id": "00000000-0000-0000-0000-000000000001"}),
                           default_source="x").events[0][1]
    assert str(explicit.event_id) == "00000000-0000-0000-0000-000000000001"


def test_bytes_are_base64_in_json():
    line = {"event_type": "DeadLetter", "occurred_at": "2026-11-01T10:00:00Z", "source_topic": "t",
            "source_partition": 0, "source_offset": 5, "original": "AAEC", "error_kind": "NOT_FRAMED",
            "error_message": "m", "worker": "w"}
    ev = parse_lines(_lines(line), default_source="x").events[0][1]
    assert ev.original == b"\x00\x01\x02"
