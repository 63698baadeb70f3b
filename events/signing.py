"""Hybrid signatures: Ed25519 + ML-DSA-65, both must verify.

The shared crypto interface of the platform (certificates, the audit log's
tree heads)::

    kp = HybridKeyPair.generate(key_id="lab-berlin/2026-1")
    sigs = kp.sign(message)                 # [Ed25519, ML_DSA_65], both carry key_id
    kp.save(directory, "lab-berlin")        # private keys 0600 PKCS8 PEM + public JSON
    pub = HybridPublicKey.load(directory / "lab-berlin.pub.json")
    verify_hybrid(pub, message, sigs).ok    # True only if BOTH verify

Private key material never appears in logs, reprs or exception messages.
The primitives come from ``cryptography`` (>= 47). An optional liboqs backend
for ML-DSA is used only when a liboqs shared library is installed
(:func:`oqs_available`); it is detected once per process without importing
``oqs`` blindly (that import tries a 5 s ``git clone`` when the library is
missing).
"""

from __future__ import annotations

import base64
import ctypes.util
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from events.models import Signature

ML_DSA_PARAMETER_SET: Literal["ML_DSA_65"] = "ML_DSA_65"
ED25519_PUBLIC_KEY_BYTES = 32
ML_DSA_65_PUBLIC_KEY_BYTES = 1952
_RAW_PUBLIC = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class KeyFileError(Exception):
    """A key file is missing, unreadable or malformed (``path``, ``reason``). Never holds key bytes."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@functools.cache
def oqs_available() -> bool:
    """Whether the optional liboqs backend can be used (checked once per process).

    Looks for the liboqs shared library first and imports ``oqs`` only when it
    exists, so a machine without liboqs never pays liboqs-python's download
    attempt.
    """
    if ctypes.util.find_library("oqs") is None and not any(
        (Path(p) / "lib" / name).exists()
        for p in (os.environ.get("OQS_INSTALL_PATH", ""), str(Path.home() / "_oqs"))
        if p
        for name in ("liboqs.so", "liboqs.dylib")
    ):
        return False
    try:
        import oqs  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure means: backend absent
        return False
    return True


@functools.cache
def ml_dsa_backend() -> Literal["cryptography", "liboqs"]:
    """The ML-DSA verify backend: ``cryptography`` unless ``QI_SIGNING_BACKEND=liboqs`` asks for
    liboqs and it is installed (decided once per process; the absence is logged once)."""
    if os.environ.get("QI_SIGNING_BACKEND", "cryptography") != "liboqs":
        return "cryptography"
    if oqs_available():
        return "liboqs"
    structlog.get_logger(__name__).warning("signing.liboqs_absent", using="cryptography")
    return "cryptography"


def _verify_ml_dsa_oqs(public_key: bytes, message: bytes, signature: bytes) -> bool:
    import oqs

    with oqs.Signature("ML-DSA-65") as verifier:
        return bool(verifier.verify(message, signature, public_key))


@dataclass(frozen=True)
class HybridPublicKey:
    """The public half: raw Ed25519 (32 bytes) and raw ML-DSA public key bytes."""

    key_id: str
    ed25519: bytes
    ml_dsa_65: bytes
    parameter_set: Literal["ML_DSA_65"] = ML_DSA_PARAMETER_SET

    def __post_init__(self) -> None:
        if not self.key_id:
            raise ValueError("key_id must not be empty")
        if len(self.ed25519) != ED25519_PUBLIC_KEY_BYTES:
            raise ValueError(f"Ed25519 public key must be {ED25519_PUBLIC_KEY_BYTES} bytes, got {len(self.ed25519)}")
        if self.parameter_set != ML_DSA_PARAMETER_SET:
            raise ValueError(f"unsupported ML-DSA parameter set {self.parameter_set!r}")
        if len(self.ml_dsa_65) != ML_DSA_65_PUBLIC_KEY_BYTES:
            raise ValueError(
                f"ML-DSA-65 public key must be {ML_DSA_65_PUBLIC_KEY_BYTES} bytes, got {len(self.ml_dsa_65)}"
            )

    def to_json(self) -> str:
        return json.dumps({
            "key_id": self.key_id,
            "ed25519": base64.b64encode(self.ed25519).decode(),
            "ml_dsa_parameter_set": self.parameter_set,
            "ml_dsa": base64.b64encode(self.ml_dsa_65).decode(),
        }, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> HybridPublicKey:
        try:
            doc = json.loads(text)
            return cls(
                key_id=doc["key_id"],
                ed25519=base64.b64decode(doc["ed25519"], validate=True),
                ml_dsa_65=base64.b64decode(doc["ml_dsa"], validate=True),
                parameter_set=doc.get("ml_dsa_parameter_set", ML_DSA_PARAMETER_SET),
            )
        except KeyError as exc:
            raise ValueError(f"public key JSON lacks the field {exc.args[0]!r}") from None
        except (TypeError, AttributeError, json.JSONDecodeError, base64.binascii.Error) as exc:
            raise ValueError(f"public key JSON is malformed: {exc}") from None

    @classmethod
    def load(cls, path: Path | str) -> HybridPublicKey:
        path = Path(path)
        try:
            return cls.from_json(path.read_bytes())
        except OSError as exc:
            raise KeyFileError(path, exc.strerror or "cannot read") from None
        except ValueError as exc:
            raise KeyFileError(path, str(exc)) from None


@dataclass(frozen=True)
class HybridVerdict:
    ed25519: bool
    ml_dsa: bool
    detail: str

    @property
    def ok(self) -> bool:
        return self.ed25519 and self.ml_dsa


@dataclass(frozen=True)
class HybridKeyPair:
    """An Ed25519 + ML-DSA-65 private key pair under one key id."""

    key_id: str
    _ed: ed25519.Ed25519PrivateKey = field(repr=False)
    _pq: mldsa.MLDSA65PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, key_id: str) -> HybridKeyPair:
        if not key_id:
            raise ValueError("key_id must not be empty")
        return cls(key_id, ed25519.Ed25519PrivateKey.generate(), mldsa.MLDSA65PrivateKey.generate())

    @functools.cached_property
    def public(self) -> HybridPublicKey:
        return HybridPublicKey(
            key_id=self.key_id,
            ed25519=self._ed.public_key().public_bytes(*_RAW_PUBLIC),
            ml_dsa_65=self._pq.public_key().public_bytes(*_RAW_PUBLIC),
        )

    def sign(self, message: bytes) -> list[Signature]:
        return [
            Signature(key_id=self.key_id, algorithm="Ed25519", value=self._ed.sign(message)),
            Signature(key_id=self.key_id, algorithm="ML_DSA_65", value=self._pq.sign(message)),
        ]

    @staticmethod
    def paths(directory: Path | str, name: str) -> tuple[Path, Path, Path]:
        """(Ed25519 private PEM, ML-DSA-65 private PEM, public JSON) for a key named ``name``."""
        d = Path(directory)
        return d / f"{name}.ed25519.pem", d / f"{name}.mldsa65.pem", d / f"{name}.pub.json"

    def save(self, directory: Path | str, name: str) -> tuple[Path, Path, Path]:
        """Write the private keys (PKCS8 PEM, mode 0600, never overwritten) and the public JSON."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        ed_path, pq_path, pub_path = self.paths(directory, name)
        for key, path in ((self._ed, ed_path), (self._pq, pq_path)):
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise KeyFileError(path, "exists; refusing to overwrite a private key") from None
            except OSError as exc:
                raise KeyFileError(path, exc.strerror or "cannot write") from None
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            os.chmod(path, 0o600)
        meta = json.loads(self.public.to_json())
        pub_path.write_text(json.dumps(meta, indent=2) + "\n")
        return ed_path, pq_path, pub_path

    @classmethod
    def load(cls, directory: Path | str, name: str) -> HybridKeyPair:
        ed_path, pq_path, pub_path = cls.paths(directory, name)
        public = HybridPublicKey.load(pub_path)
        ed = _load_private(ed_path, ed25519.Ed25519PrivateKey)
        pq = _load_private(pq_path, mldsa.MLDSA65PrivateKey)
        pair = cls(public.key_id, ed, pq)
        if pair.public != public:
            raise KeyFileError(pub_path, "public key does not match the private keys beside it")
        return pair


def _load_private(path: Path, kind: type) -> object:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(path, exc.strerror or "cannot read") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - never echo the key material
        raise KeyFileError(path, "not an unencrypted PKCS8 PEM private key") from None
    if not isinstance(key, kind):
        raise KeyFileError(path, f"holds a {type(key).__name__.lstrip('_')}, expected {kind.__name__}")
    return key


def verify_hybrid(public: HybridPublicKey, message: bytes, signatures: list[Signature]) -> HybridVerdict:
    """Check the Ed25519 and the ML-DSA-65 signature of ``message``; a missing one fails."""
    problems: list[str] = []
    ed_ok = pq_ok = False
    by_alg: dict[str, list[Signature]] = {}
    for sig in signatures:
        by_alg.setdefault(sig.algorithm, []).append(sig)
    eds = by_alg.get("Ed25519", [])
    pqs = by_alg.get(public.parameter_set, [])
    if len(eds) != 1:
        problems.append("no Ed25519 signature" if not eds else "more than one Ed25519 signature")
    elif eds[0].key_id != public.key_id:
        problems.append(f"Ed25519 signature names key {eds[0].key_id!r}, expected {public.key_id!r}")
    else:
        try:
            _ed25519_public(public.ed25519).verify(eds[0].value, message)
            ed_ok = True
        except InvalidSignature:
            problems.append("Ed25519 signature does not verify")
    if len(pqs) != 1:
        problems.append(f"no {public.parameter_set} signature" if not pqs else f"more than one {public.parameter_set} signature")
    elif pqs[0].key_id != public.key_id:
        problems.append(f"{public.parameter_set} signature names key {pqs[0].key_id!r}, expected {public.key_id!r}")
    else:
        pq_ok = _verify_ml_dsa(public.ml_dsa_65, message, pqs[0].value)
        if not pq_ok:
            problems.append(f"{public.parameter_set} signature does not verify")
    others = sorted(set(by_alg) - {"Ed25519", public.parameter_set})
    if others:
        problems.append("unexpected signature algorithms: " + ", ".join(others))
    return HybridVerdict(ed_ok, pq_ok, "; ".join(problems) if problems else "Ed25519 and ML-DSA-65 verify")


@functools.lru_cache(maxsize=1024)
def _ed25519_public(raw: bytes) -> ed25519.Ed25519PublicKey:
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


@functools.lru_cache(maxsize=1024)
def _ml_dsa_public(raw: bytes) -> mldsa.MLDSA65PublicKey:
    return mldsa.MLDSA65PublicKey.from_public_bytes(raw)


def _verify_ml_dsa(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if ml_dsa_backend() == "liboqs":
        return _verify_ml_dsa_oqs(public_key, message, signature)
    try:
        _ml_dsa_public(public_key).verify(signature, message)
        return True
    except InvalidSignature:
        return False
    except ValueError:
        return False
