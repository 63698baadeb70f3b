"""TLS and username/password to the broker: a mosquitto of our own that requires both."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import shutil
import ssl
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from structlog.testing import capture_logs

from qi.config import BridgeSettings, MqttSettings
from qi.platform import Platform
from qi.stack.process import free_port
from tests.connectors.helpers import bridge_running, collect, mapping_for, site_for

pytestmark = pytest.mark.stack


def _cert(subject: str, key, issuer_key=None, issuer_name=None, ca: bool = False):  # noqa: ANN001
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


def _pem(path, obj) -> None:  # noqa: ANN001
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


@pytest.fixture
def tls_broker(tmp_path):
    if not shutil.which("mosquitto"):
        pytest.fail("needs mosquitto (docs/decisions/0020-mqtt-broker-for-tests.md)")
    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("qi-test-ca", ca_key, ca=True)
    srv = _cert("127.0.0.1", srv_key, issuer_key=ca_key, issuer_name=ca.subject)
    _pem(tmp_path / "ca.pem", ca)
    _pem(tmp_path / "server.pem", srv)
    _pem(tmp_path / "server.key", srv_key)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "gw-user", "s3cret"], check=True)
    port = free_port()
    (tmp_path / "m.conf").write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {tmp_path / 'passwd'}\n"
        f"cafile {tmp_path / 'ca.pem'}\ncertfile {tmp_path / 'server.pem'}\nkeyfile {tmp_path / 'server.key'}\n"
        "max_queued_messages 0\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "m.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    yield port, tmp_path / "ca.pem"
    proc.terminate()
    proc.wait(10)


def _publish_tls(port: int, ca, messages) -> None:  # noqa: ANN001
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="qi-test-tls-gw")
    c.username_pw_set("gw-user", "s3cret")
    c.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    up = threading.Event()
    c.on_connect = lambda *a, **k: up.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert up.wait(10)
    infos = [c.publish(t, p, qos=1) for t, p in messages]
    for i in infos:
        i.wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def test_bridge_over_tls_with_username_and_password(platform, topic_prefix, tls_broker):
    port, ca = tls_broker
    site = site_for(topic_prefix)
    settings = platform.settings.model_copy(update={
        "mqtt": MqttSettings(url=f"mqtts://gw-user:s3cret@127.0.0.1:{port}"),
        "bridge": BridgeSettings(tls_ca_file=ca)})
    tls_platform = Platform(settings)
    msgs = [(f"plants/{site}/tw-tls/s{i}/reading", json.dumps({"v": i, "u": "Cel", "ts": 1763899200 + i}).encode())
            for i in range(20)]

    async def go():
        async with bridge_running(tls_platform, mapping_for(topic_prefix)) as (_, serde):
            await asyncio.to_thread(_publish_tls, port, ca, msgs)
            return await collect(tls_platform, serde, "readings", 20, timeout_s=30)

    got = asyncio.run(go())
    assert sorted(r["value"] for r in got) == [float(i) for i in range(20)]


def test_wrong_password_is_refused_and_the_bridge_says_so(platform, topic_prefix, tls_broker):
    port, ca = tls_broker
    settings = platform.settings.model_copy(update={
        "mqtt": MqttSettings(url=f"mqtts://127.0.0.1:{port}"),
        "bridge": BridgeSettings(tls_ca_file=ca, username="gw-user", password="wrong")})
    bad = Platform(settings)

    async def go():
        await bad.ensure_topics()
        bridge = bad.mqtt_bridge(mapping_for(topic_prefix), await bad.serde())
        stop = asyncio.Event()
        task = asyncio.create_task(bridge.run(stop))
        await asyncio.sleep(3)
        health = bridge.health()
        stop.set()
        await asyncio.wait_for(task, 30)
        return health

    with capture_logs() as logs:
        health = asyncio.run(go())
    assert health["connected"] is False and health["ready"] is False
    refused = [e for e in logs if e["event"] == "bridge.mqtt_refused"]
    assert refused and "authoriz" in refused[0]["reason"].lower(), logs
