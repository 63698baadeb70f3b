"""The embedded Schema Registry endpoint, through confluent-kafka's own client (not ``mock://``).

The session stack runs ``events.registry.rest`` as its own process. Our
workers write with the built-in registry (no network); a third-party
consumer with ``SchemaRegistryClient`` + ``AvroDeserializer`` pointed at the
endpoint must decode every event type from our topics.
"""

import asyncio
import json

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from events.registry.builtin import content_id
from events.serde import subject
from qi.config import SchemaRegistrySettings
from qi.platform import Platform
from tests.fixtures import example_event

pytestmark = pytest.mark.stack


@pytest.fixture
def registry_url(local_stack) -> str:
    return local_stack.urls()["schema-registry"]


def test_confluent_deserializer_decodes_every_event_type_from_our_topics(catalog, platform, registry_url):
    client = SchemaRegistryClient({"url": registry_url})
    deserializer = AvroDeserializer(client)

    async def through_broker():
        await platform.ensure_topics()
        serde = await platform.serde()  # the built-in registry: what our workers write with
        events = [example_event(catalog, name, n) for n, name in enumerate(catalog.names())]
        async with platform.publisher(serde) as pub:
            await pub.publish_many(events)
        async with platform.reader(serde, sorted({e.TOPIC_FAMILY for e in events})) as reader:
            return events, await reader.read_to_end()

    events, records = asyncio.run(through_broker())
    by_id = {e.event_id: e for e in events}
    assert len(records) == len(events) == len(catalog.names())
    decoded_types = set()
    for r in records:
        theirs = deserializer(r.value, SerializationContext(r.topic, MessageField.VALUE))
        assert theirs == by_id[theirs["event_id"]].to_avro()
        decoded_types.add(theirs["event_type"])
    assert decoded_types == set(catalog.names())


def test_our_confluent_client_registers_through_the_endpoint_with_builtin_ids(catalog, platform, registry_url):
    """QI_SCHEMA_REGISTRY_URL pointed at the endpoint: the same ids as the built-in registry."""
    settings = platform.settings.model_copy(update={"schema_registry": SchemaRegistrySettings(url=registry_url)})
    remote = Platform(settings)

    async def ids():
        serde = await remote.serde()  # registers every subject of this test's topics over HTTP
        try:
            return {name: serde.schema_id(name) for name in catalog.names()}
        finally:
            await serde._registry.close()

    got = asyncio.run(ids())
    assert got == {name: content_id(catalog.latest(name).text) for name in catalog.names()}

    client = SchemaRegistryClient({"url": registry_url})
    subjects = client.get_subjects()
    for name in catalog.names():
        subj = subject(platform.topics.topic(catalog.latest(name).topic_family), name)
        assert subj in subjects
        latest = client.get_latest_version(subj)
        assert latest.schema_id == got[name]
        assert json.loads(latest.schema.schema_str) == catalog.latest(name).raw


def test_read_side_serves_catalogue_versions_in_order(catalog, registry_url):
    """Seeded subjects of the unprefixed topics list every version of the catalogue, oldest first."""
    client = SchemaRegistryClient({"url": registry_url})
    for name in catalog.names():
        versions = catalog.versions(name)
        subj = subject(f"qi.{versions[0].topic_family}.v1", name)
        assert client.get_versions(subj) == list(range(1, len(versions) + 1))
        for n, sv in enumerate(versions, start=1):
            rs = client.get_version(subj, n)
            assert rs.schema_id == content_id(sv.text)
            assert client.get_schema(rs.schema_id).schema_str == sv.text
        raw = httpx.get(f"{registry_url}/schemas/ids/{content_id(versions[-1].text)}/schema").json()
        assert raw == versions[-1].raw
    assert httpx.get(f"{registry_url}/config").json() == {"compatibilityLevel": "BACKWARD"}


def test_registration_is_checked_for_backward_compatibility(registry_url, topic_prefix):
    client = SchemaRegistryClient({"url": registry_url})
    subj = f"{topic_prefix}qi.test.v1-qi.events.Probe"
    v1 = {"type": "record", "name": "Probe", "namespace": "qi.events",
          "fields": [{"name": "a", "type": "string"}]}
    v2_ok = dict(v1, fields=[*v1["fields"], {"name": "b", "type": "long", "default": 0}])
    v2_bad = dict(v1, fields=[*v1["fields"], {"name": "c", "type": "long"}])  # no default: old data unreadable

    id1 = client.register_schema(subj, Schema(json.dumps(v1), "AVRO"))
    assert id1 == content_id(json.dumps(v1, sort_keys=True, separators=(",", ":")))
    assert client.register_schema(subj, Schema(json.dumps(v1), "AVRO")) == id1  # idempotent
    assert not client.test_compatibility(subj, Schema(json.dumps(v2_bad), "AVRO"))
    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema(subj, Schema(json.dumps(v2_bad), "AVRO"))
    assert err.value.http_status_code == 409
    assert client.test_compatibility(subj, Schema(json.dumps(v2_ok), "AVRO"))
    id2 = client.register_schema(subj, Schema(json.dumps(v2_ok), "AVRO"))
    assert client.get_versions(subj) == [1, 2]
    assert client.get_latest_version(subj).schema_id == id2 != id1
    assert client.lookup_schema(subj, Schema(json.dumps(v1), "AVRO")).version == 1

    missing = httpx.get(f"{registry_url}/schemas/ids/1")
    assert missing.status_code == 404 and missing.json()["error_code"] == 40403
    unknown = httpx.get(f"{registry_url}/subjects/nope/versions")
    assert unknown.status_code == 404 and unknown.json()["error_code"] == 40401
