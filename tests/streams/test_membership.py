"""The member file a supervised instance keeps for its successor (docs/decisions/0073)."""

from __future__ import annotations

from types import SimpleNamespace

from streams.membership import MemberFile, Predecessor, consumer_member


def test_member_file_round_trip_and_clear(tmp_path):
    f = MemberFile(tmp_path, "score", "qi-score")
    assert f.load() is None
    f.save("qi-score-1234", 7)
    assert f.path == tmp_path / "members" / "score.qi-score.json"
    assert MemberFile(tmp_path, "score", "qi-score").load() == Predecessor("qi-score-1234", 7)
    assert MemberFile(tmp_path, "score", "other-group").load() is None  # per group
    f.clear()
    assert f.load() is None and not f.path.exists()


def test_a_damaged_member_file_is_no_predecessor(tmp_path):
    f = MemberFile(tmp_path, "audit", "qi-audit")
    f.path.parent.mkdir(parents=True)
    f.path.write_text("{not json")
    assert f.load() is None
    f.path.write_text('{"generation": 3}')
    assert f.load() is None


def test_consumer_member_only_once_joined():
    assert consumer_member(SimpleNamespace()) is None  # not started: no coordinator
    assert consumer_member(SimpleNamespace(_coordinator=SimpleNamespace(member_id="", generation=-1))) is None
    joined = SimpleNamespace(_coordinator=SimpleNamespace(member_id="m-1", generation=4))
    assert consumer_member(joined) == ("m-1", 4)
