from events import codegen
from events.models import EVENT_TYPES
from events.schemas import SchemaCatalog
from tests.fixtures import reading_v2, schemas_with


def test_models_module_is_generated_from_the_current_schemas(catalog):
    assert codegen.models_path().read_text() == codegen.generate(catalog), (
        "events/models.py is stale: run `qi schemas codegen`"
    )


def test_a_schema_change_changes_the_generated_types(tmp_path, catalog):
    d = schemas_with(tmp_path, {"SensorReading.v2.avsc": reading_v2(catalog)})
    source = codegen.generate(SchemaCatalog.load(d))
    assert "quality: str | None = None" in source
    assert "SCHEMA_VERSION: ClassVar[int] = 2" in source
    namespace: dict = {}
    exec(compile(source, "models_v2.py", "exec"), namespace)  # the generated module is valid Python
    assert "quality" in namespace["SensorReading"].model_fields


def test_every_event_type_has_a_class_with_its_catalogue_data(catalog):
    assert set(EVENT_TYPES) == set(catalog.names())
    for name, cls in EVENT_TYPES.items():
        sv = catalog.latest(name)
        assert (cls.TOPIC_FAMILY, cls.KEY_FIELDS, cls.SCHEMA_VERSION) == (sv.topic_family, sv.key_fields, sv.version)
        assert set(cls.model_fields) == {f["name"] for f in sv.raw["fields"]}
