"""The mapping file, topic filters and payload conversion (pure logic, no stack)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.mqtt.convert import Converter
from connectors.mqtt.errors import ConversionError, MappingConfigError, Reason
from connectors.mqtt.filters import FilterSyntaxError, TopicFilter
from connectors.mqtt.mapping import load_mapping, parse_mapping
from events.registry import BuiltinRegistry
from events.serde import Serde
from events.topics import TopicNames

EXAMPLE = Path(__file__).resolve().parents[2] / "connectors" / "mqtt" / "examples" / "plant.toml"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def converter(catalog) -> Converter:
    serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames(""))
    asyncio.run(serde.prepare())
    conv = Converter(load_mapping(EXAMPLE), serde, TopicNames(""))
    conv.serde = serde  # for decoding in the tests
    return conv


def decode(conv: Converter, records) -> list[dict]:
    return [conv.serde.decode(r.value).record for r in records]


def test_filters_match_wildcards_and_capture_levels():
    f = TopicFilter.parse("plants/+/{twin_id}/{sensor_id}/reading")
    assert f.subscription == "plants/+/+/+/reading"
    assert f.match("plants/p1/tw-1/s2/reading") == {"twin_id": "tw-1", "sensor_id": "s2"}
    assert f.match("plants/p1/tw-1/s2/other") is None
    assert f.match("plants/p1/tw-1/reading") is None
    assert f.match("plants/p1//s2/reading") is None  # an empty level is no id
    assert f.match("plants/p1/ /s2/reading") is None
    h = TopicFilter.parse("gw/{twin_id}/#")
    assert h.subscription == "gw/+/#" and h.match("gw/t9/a/b/c") == {"twin_id": "t9"}
    for bad in ("a/#/b", "a/b+/c", "a/{x}/{x}", ""):
        with pytest.raises(FilterSyntaxError):
            TopicFilter.parse(bad)


def test_example_config_loads():
    m = load_mapping(EXAMPLE)
    assert [x.format for x in m.mapping] == ["json", "senml"]
    assert m.bridge.client_id == "qi-bridge-plant"


@pytest.mark.parametrize(("change", "line", "field"), [
    (('unit = "u"', 'unt = "u"'), 19, "mapping.0.fields.unt"),
    (('sensor_id = "n"', 'sensor_id = "x"'), 33, "mapping.1.fields.sensor_id"),
    (('format = "senml"', 'format = "xml"'), 31, "mapping.1.format"),
    (('time_unit = "s"', "time_unit = 3"), 16, "mapping.0.time_unit"),
    (('value = "v"', 'value = "v'), 18, None),                 # TOML syntax: the line, no field
    (('quantity = "q"\n', ""), 17, "mapping.0.fields.quantity"),  # no source left: the table's line
])
def test_config_errors_name_line_and_field(change, line, field):
    text = EXAMPLE.read_text().replace(*change)
    if change[1] == "":
        text = text.replace('quantity = "unknown"\n', "")
    with pytest.raises(MappingConfigError) as e:
        parse_mapping(text, "plant.toml")
    assert e.value.field == field
    assert e.value.line == line, str(e.value)
    assert f"line {line}" in str(e.value)


def test_config_rejects_a_field_from_two_sources_and_an_unknown_capture():
    base = '[[mapping]]\nfilter = "a/{twin_id}/{sensor_id}"\n[mapping.fields]\nvalue = "v"\nunit = "u"\n'
    with pytest.raises(MappingConfigError) as e:
        parse_mapping(base + 'twin_id = "t"\n[mapping.defaults]\nquantity = "x"\n')
    assert e.value.field == "mapping.0.fields.twin_id" and e.value.line == 6
    with pytest.raises(MappingConfigError) as e:
        parse_mapping('[[mapping]]\nfilter = "a/{plant}"\n')
    assert e.value.field == "mapping.0.filter" and e.value.line == 2


def test_json_reading_maps_topic_levels_and_payload_fields(converter):
    payload = json.dumps({"gw": "gw-7", "seq": 1, "ts": 1763899200.25, "q": "temperature", "v": 21.5,
                          "u": "Cel"}).encode()
    recs = converter.convert("plants/p1/tw-3/s9/reading", payload, NOW)
    assert len(recs) == 1 and recs[0].key == b"tw-3/s9" and recs[0].topic == "qi.readings.v1"
    (r,) = decode(converter, recs)
    assert (r["twin_id"], r["sensor_id"], r["quantity"], r["value"], r["unit"], r["source"]) == \
        ("tw-3", "s9", "temperature", 21.5, "Cel", "gw-7")
    assert r["occurred_at"] == datetime.fromtimestamp(1763899200.25, UTC)
    # Deterministic identity: the same message gives the same id, another payload another id.
    again = converter.convert("plants/p1/tw-3/s9/reading", payload, NOW)
    assert again[0].event_id == recs[0].event_id
    other = converter.convert("plants/p1/tw-3/s9/reading", payload.replace(b'"seq": 1', b'"seq": 2'), NOW)
    assert other[0].event_id != recs[0].event_id


def test_senml_pack_expands_with_base_values(converter):
    pack = [
        {"bn": "urn:dev:gw1:", "bt": 1763899200, "bu": "Cel", "bv": 20.0, "n": "t1", "v": 1.5},
        {"n": "t2", "v": -0.5, "t": 2},
        {"n": "p1", "u": "kPa", "v": 81.0, "t": 3},
    ]
    recs = converter.convert("plants/p1/tw-1/senml", json.dumps(pack).encode(), NOW)
    rows = decode(converter, recs)
    assert [(r["sensor_id"], r["value"], r["unit"]) for r in rows] == \
        [("t1", 21.5, "Cel"), ("t2", 19.5, "Cel"), ("p1", 101.0, "kPa")]
    assert [r["occurred_at"].timestamp() for r in rows] == [1763899200, 1763899202, 1763899203]
    assert {r["twin_id"] for r in rows} == {"tw-1"}
    assert len({r.event_id for r in recs}) == 3


def test_senml_relative_time_is_relative_to_now(converter):
    recs = converter.convert("plants/p1/tw-1/senml", b'[{"n":"x","u":"Cel","v":1,"t":-5}]', NOW)
    assert decode(converter, recs)[0]["occurred_at"].timestamp() == NOW.timestamp() - 5


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("plants/p1/tw/s/reading", b"{not json", Reason.BAD_JSON),
    ("plants/p1/tw/s/reading", b"[1, 2]", Reason.WRONG_TYPE),
    ("plants/p1/tw/s/reading", b'{"v": "hot", "u": "Cel"}', Reason.WRONG_TYPE),
    ("plants/p1/tw/s/reading", b'{"v": NaN, "u": "Cel"}', Reason.NON_FINITE),
    ("plants/p1/tw/s/reading", b'{"v": 1e400, "u": "Cel"}', Reason.NON_FINITE),
    ("plants/p1/tw/s/reading", b'{"v": Infinity, "u": "Cel"}', Reason.NON_FINITE),
    ("plants/p1/tw/s/reading", b'{"u": "Cel"}', Reason.MISSING_FIELD),
    ("plants/p1/tw/s/reading", b'{"v": 1}', Reason.MISSING_FIELD),
    ("plants/p1/tw/s/reading", b'{"v": 1, "u": " "}', Reason.MISSING_FIELD),
    ("plants/p1/tw/s/reading", b'{"v": 1, "u": "Cel", "pad": "' + b"x" * 70000 + b'"}', Reason.OVERSIZED),
    ("factory/tw/s", b'{"v": 1, "u": "Cel"}', Reason.UNMAPPED_TOPIC),
    ("plants/p1/tw/senml", b'[{"n": "a", "u": "Cel", "vs": "on"}]', Reason.WRONG_TYPE),
    ("plants/p1/tw/senml", b'[{"n": "a", "v": 1}]', Reason.MISSING_FIELD),   # no unit anywhere
    ("plants/p1/tw/senml", b'[{"bv": 1e308, "n": "a", "u": "Cel", "v": 1e308}]', Reason.NON_FINITE),
    ("plants/p1/tw/senml", b"[]", Reason.WRONG_TYPE),
    ("plants/p1/tw/s/reading", b'\xff\xfe{"v": 1}', Reason.BAD_JSON),
])
def test_bad_messages_raise_their_reason(converter, topic, payload, reason):
    with pytest.raises(ConversionError) as e:
        converter.convert(topic, payload, NOW)
    assert e.value.reason is reason
    dl = converter.serde.decode(converter.dead_letter(topic, payload, e.value, NOW).value).record
    assert dl["source_topic"] == topic and dl["original"] == payload[:65536]  # the example's max_payload_bytes
    assert ("truncated" in dl["error_message"]) == (len(payload) > 65536)
    assert dl["error_message"].startswith(reason.value + ":") and dl["error_kind"] == reason.kind
