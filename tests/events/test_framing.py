import pytest

from events import framing
from events.errors import NotFramedError


def test_header_is_magic_byte_and_big_endian_id():
    assert framing.header(258) == b"\x00\x00\x00\x01\x02"
    assert framing.schema_id_of(framing.header(2**31 - 1) + b"body") == 2**31 - 1


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x01", b"\x01\x00\x00\x00\x01rest", b"{\"json\": 1}"])
def test_unframed_bytes_are_rejected_with_a_reason(data):
    with pytest.raises(NotFramedError) as e:
        framing.schema_id_of(data)
    assert e.value.kind == "NOT_FRAMED"


@pytest.mark.parametrize("bad", [0, -1, 2**31])
def test_schema_id_range(bad):
    with pytest.raises(ValueError):
        framing.header(bad)
