"""The registry endpoint's logic without HTTP or a stack: seeding, ids, compatibility, persistence."""

import json

import pytest

from events.registry.builtin import content_id
from events.registry.rest import INCOMPATIBLE, INVALID_LEVEL, INVALID_SCHEMA, RegistryHTTPError, RegistryState
from events.schemas import normalized_text
from events.serde import subject
from events.topics import TopicNames

V1 = {"type": "record", "name": "Probe", "namespace": "qi.events", "fields": [{"name": "a", "type": "string"}]}
V2 = dict(V1, fields=[*V1["fields"], {"name": "b", "type": ["null", "long"], "default": None}])
BAD = dict(V1, fields=[{"name": "a", "type": "long"}])  # string -> long: old data unreadable


def test_seeded_subjects_carry_every_catalogue_version_under_prefixed_topics(catalog):
    state = RegistryState.seeded(catalog, TopicNames("staging."))
    for name in catalog.names():
        versions = catalog.versions(name)
        subj = subject(f"staging.qi.{versions[0].topic_family}.v1", name)
        assert state.versions(subj) == list(range(1, len(versions) + 1))
        assert state.version(subj, "latest")["id"] == content_id(versions[-1].text)
        assert state.schema(content_id(versions[0].text))["schema"] == versions[0].text


def test_registration_normalizes_text_so_ids_match_the_builtin_registry(catalog):
    state = RegistryState.seeded(catalog, TopicNames())
    pretty = json.dumps(V1, indent=4)  # whitespace and key order must not change the id
    sid = state.register("s-qi.events.Probe", pretty)
    assert sid == content_id(normalized_text(V1))
    assert state.register("s-qi.events.Probe", json.dumps(V1)) == sid
    assert state.versions("s-qi.events.Probe") == [1]


def test_backward_compatibility_is_enforced_unless_level_is_none(catalog):
    state = RegistryState.seeded(catalog, TopicNames())
    state.register("p", json.dumps(V1))
    with pytest.raises(RegistryHTTPError) as err:
        state.register("p", json.dumps(BAD))
    assert err.value.status == 409 and err.value.error_code == INCOMPATIBLE
    assert "type changed" in err.value.message
    assert state.compatible("p", "latest", json.dumps(BAD))["is_compatible"] is False
    assert state.register("p", json.dumps(V2)) == content_id(normalized_text(V2))

    state.set_level("p", "NONE")
    state.register("p", json.dumps(BAD))
    assert state.versions("p") == [1, 2, 3]
    assert state.level_of("p") == "NONE" and state.level_of("other") == "BACKWARD"
    with pytest.raises(RegistryHTTPError) as err:
        state.set_level(None, "FULL_TRANSITIVE")
    assert err.value.error_code == INVALID_LEVEL


def test_invalid_schema_is_rejected_with_422(catalog):
    state = RegistryState.seeded(catalog, TopicNames())
    for text in ("not json", json.dumps({"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]})):
        with pytest.raises(RegistryHTTPError) as err:
            state.register("p", text)
        assert err.value.status == 422 and err.value.error_code == INVALID_SCHEMA


def test_registrations_and_levels_survive_a_restart(catalog, tmp_path):
    path = tmp_path / "registrations.json"
    first = RegistryState.seeded(catalog, TopicNames(), path)
    sid = first.register("p", json.dumps(V1))
    first.register("p", json.dumps(V2))
    first.set_level("p", "NONE")

    again = RegistryState.seeded(catalog, TopicNames(), path)
    assert again.version("p", "1")["id"] == sid
    assert again.versions("p") == [1, 2]
    assert again.level_of("p") == "NONE"
    assert again.schema(sid)["schema"] == normalized_text(V1)
