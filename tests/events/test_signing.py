"""Hybrid Ed25519 + ML-DSA-65 signatures: both must verify, key files stay private."""

from __future__ import annotations

import stat

import pytest

from events.models import Signature
from events.signing import HybridKeyPair, HybridPublicKey, KeyFileError, oqs_available, verify_hybrid

MSG = b"qi-stream/certificate/v1\n{}"


@pytest.fixture(scope="module")
def pair() -> HybridKeyPair:
    return HybridKeyPair.generate("lab-test/2026-1")


@pytest.fixture(scope="module")
def other() -> HybridKeyPair:
    return HybridKeyPair.generate("lab-test/2026-1")


def test_sign_produces_both_signatures_under_the_key_id(pair: HybridKeyPair) -> None:
    sigs = pair.sign(MSG)
    assert [(s.algorithm, s.key_id) for s in sigs] == [("Ed25519", "lab-test/2026-1"), ("ML_DSA_65", "lab-test/2026-1")]
    verdict = verify_hybrid(pair.public, MSG, sigs)
    assert verdict.ok and verdict.ed25519 and verdict.ml_dsa


def test_changed_message_fails_both(pair: HybridKeyPair) -> None:
    verdict = verify_hybrid(pair.public, MSG + b" ", pair.sign(MSG))
    assert not verdict.ok and not verdict.ed25519 and not verdict.ml_dsa
    assert "Ed25519" in verdict.detail and "ML_DSA_65" in verdict.detail


def test_forged_ed25519_with_valid_ml_dsa_is_invalid(pair: HybridKeyPair, other: HybridKeyPair) -> None:
    good, forged = pair.sign(MSG), other.sign(MSG)
    verdict = verify_hybrid(pair.public, MSG, [forged[0], good[1]])
    assert (verdict.ok, verdict.ed25519, verdict.ml_dsa) == (False, False, True)


def test_forged_ml_dsa_with_valid_ed25519_is_invalid(pair: HybridKeyPair, other: HybridKeyPair) -> None:
    good, forged = pair.sign(MSG), other.sign(MSG)
    verdict = verify_hybrid(pair.public, MSG, [good[0], forged[1]])
    assert (verdict.ok, verdict.ed25519, verdict.ml_dsa) == (False, True, False)


@pytest.mark.parametrize("keep", [[0], [1], []])
def test_missing_signature_is_a_failure(pair: HybridKeyPair, keep: list[int]) -> None:
    sigs = pair.sign(MSG)
    verdict = verify_hybrid(pair.public, MSG, [sigs[i] for i in keep])
    assert not verdict.ok
    assert "no " in verdict.detail


def test_signature_naming_another_key_fails(pair: HybridKeyPair) -> None:
    sigs = [s.model_copy(update={"key_id": "someone-else"}) for s in pair.sign(MSG)]
    verdict = verify_hybrid(pair.public, MSG, sigs)
    assert not verdict.ed25519 and not verdict.ml_dsa
    assert "someone-else" in verdict.detail


def test_garbage_signature_bytes_fail_without_raising(pair: HybridKeyPair) -> None:
    sigs = [Signature(key_id=pair.key_id, algorithm="Ed25519", value=b"\x00" * 3),
            Signature(key_id=pair.key_id, algorithm="ML_DSA_65", value=b"\x01" * 10)]
    assert not verify_hybrid(pair.public, MSG, sigs).ok


def test_save_and_load_round_trip_with_private_modes(pair: HybridKeyPair, tmp_path) -> None:
    ed_path, pq_path, pub_path = pair.save(tmp_path, "lab")
    for p in (ed_path, pq_path):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert p.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = HybridKeyPair.load(tmp_path, "lab")
    assert loaded.public == pair.public
    assert verify_hybrid(HybridPublicKey.load(pub_path), MSG, loaded.sign(MSG)).ok
    with pytest.raises(KeyFileError) as exc:
        pair.save(tmp_path, "lab")
    assert exc.value.path == ed_path


def test_public_json_round_trip_and_errors(pair: HybridKeyPair, tmp_path) -> None:
    assert HybridPublicKey.from_json(pair.public.to_json()) == pair.public
    bad = tmp_path / "bad.pub.json"
    bad.write_text('{"key_id": "x", "ed25519": "AAAA"}')
    with pytest.raises(KeyFileError) as exc:
        HybridPublicKey.load(bad)
    assert exc.value.path == bad and "ml_dsa" in exc.value.reason


def test_private_key_material_never_in_repr_or_errors(pair: HybridKeyPair, tmp_path) -> None:
    ed_path, pq_path, _ = pair.save(tmp_path, "k")
    pem = ed_path.read_bytes()
    assert "PRIVATE" not in repr(pair) and pem.decode() not in repr(pair)
    pq_path.write_bytes(pem)  # an Ed25519 key where the ML-DSA one should be
    with pytest.raises(KeyFileError) as exc:
        HybridKeyPair.load(tmp_path, "k")
    assert exc.value.path == pq_path
    assert pem.decode().splitlines()[1] not in str(exc.value)


def test_liboqs_absence_is_detected_quickly() -> None:
    import time

    oqs_available.cache_clear()
    t0 = time.monotonic()
    oqs_available()
    assert time.monotonic() - t0 < 2.0  # never the 5 s countdown + git clone of liboqs-python
