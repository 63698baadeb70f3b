"""The HTTP API under load: certificate verification and a sensor's last 24 h, 50 concurrent clients.

In a stack of its own (``.qi/bench-api``, memory log, deleted afterwards) the API tests' world
(tests/api/world.py: the demo's labs, twins and certificates, 24 h of one sensor's readings at
one a minute with scores) flows through the real workers (validate, project postgres / redis,
warehouse, audit) and ``qi api`` serves it. Then, for ``--seconds`` each after a warm-up:

* **verify**: ``GET /verify/DCC-DEMO-0001`` (public; the rate limit is raised for the bench);
  **floor**: the Redis reads of the same data from Python (the GET of the live generation and the
  HGETALL of the certificate's and its validation's hashes, pipelined), same concurrency.
* **sensor_24h**: ``GET /sensors/gauge-0001/s1/readings``, a 24 h range (1,440 readings and their
  scores, at most 1,000 points), **every request a range of its own**: client ``c`` of ``n`` asks
  its ``j``-th request for the 24 h ending ``c + n*j`` seconds before the newest reading, so no
  two requests in flight (nor within the API's reuse window) share a query: each is a ClickHouse
  query; **floor**: the same SQL with the same distinct parameters (and output format) posted from
  Python to the warehouse's SQL endpoint (the process owning chDB, decision 0061), same concurrency.
* **sensor_24h_shared** (for comparison): every client asks the same range (one live chart on
  many screens), which the API coalesces and reuses for QI_API_CACHE_S.
* **client_floor**: the load generator alone against a trivial HTTP server in another process
  (a fixed 200 answer): the most this client can measure on this machine.
* **api_live**: ``GET /live`` of the API (no I/O): what serving costs before any endpoint work.

Every API row also has ``cpu_ms_per_request``: the CPU time (user + system, /proc) of the ``qi api``
processes during the measured seconds divided by the requests answered, which holds up under a
shared machine's load better than requests/s. ``verify`` also has ``floor_lean_per_s``: the same
Redis reads through the API's own client (qi/api/sources/resp.py), same concurrency.

The load comes from a separate process with a minimal HTTP/1.1 keep-alive client on asyncio
(``--clients`` connections, each sending its next request when the previous answer is in).

    python -m bench.api [--clients 50] [--seconds 10] [--api-workers 2] [--only sensor_24h ...]

``--only`` runs just the named rows (``sensor_24h`` brings its SQL-endpoint floor); the others are
left out of ``bench/results/api.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench._report import report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / ".qi" / "bench-api"
#: distinct ranges of sensor_24h: the 24 h ending 0 .. DISTINCT-1 seconds before the newest reading
DISTINCT = 20_000
ROWS = ("verify", "sensor_24h", "sensor_24h_shared", "client_floor", "api_live")


# --- the load generator (its own process) -----------------------------------------------------

async def _client(host: str, port: int, requests: list[bytes], first: int, step: int, until: float,
                  lat: list[float], statuses: dict[int, int]) -> None:
    """One keep-alive connection asking ``requests[first]``, ``requests[first + step]``, ... in turn."""
    reader, writer = await asyncio.open_connection(host, port)
    i = first
    try:
        while time.perf_counter() < until:
            req = requests[i % len(requests)]
            i += step
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def _load(host: str, port: int, paths: list[str], headers: dict[str, str], clients: int, warmup_s: float,
          seconds: float, out, marks=None) -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode() for p in paths]
    # the warm-up starts each client half-way through its sequence, so the measured requests are new
    half = len(requests) // 2

    async def go():
        await asyncio.gather(*(_client(host, port, requests, half + c, clients, time.perf_counter() + warmup_s, [], {})
                               for c in range(clients)))
        lat: list[float] = []
        statuses: dict[int, int] = {}
        if marks is not None:
            marks.put("start")
        t0 = time.perf_counter()
        await asyncio.gather(*(_client(host, port, requests, c, clients, t0 + seconds, lat, statuses)
                               for c in range(clients)))
        elapsed = time.perf_counter() - t0
        if marks is not None:
            marks.put("end")
        return lat, elapsed, statuses

    lat, elapsed, statuses = asyncio.run(go())
    out.put({"lat": lat, "elapsed": elapsed, "statuses": statuses})


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (uvicorn's workers)."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def load(url: str, paths: list[str], headers: dict[str, str], clients: int, warmup_s: float, seconds: float,
         cpu_pid: int | None = None, owner_pid: int | None = None) -> dict:
    """``clients`` connections from a process of their own; client c asks paths[c], paths[c + clients], ...
    With ``cpu_pid``, also the CPU ms per request of that process tree during the measured part
    (``owner_pid``: the same for the warehouse worker, the chDB owner, as ``owner_cpu_ms_per_request``)."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    marks: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_load, args=(host, int(port), paths, headers, clients, warmup_s, seconds, q, marks))
    p.start()
    cpu = owner = None
    if cpu_pid is not None:
        marks.get(timeout=warmup_s + 120)  # the measured part starts
        c0, o0 = _cpu_s(cpu_pid), owner_pid and _cpu_s(owner_pid)
        marks.get(timeout=seconds + 120)  # ...and ends
        cpu = _cpu_s(cpu_pid) - c0
        owner = owner_pid and _cpu_s(owner_pid) - o0
    res = q.get(timeout=warmup_s + seconds + 120)
    p.join(30)
    out = summary(res["lat"], res["elapsed"], res["statuses"])
    if cpu is not None:
        out["cpu_ms_per_request"] = cpu * 1000 / max(1, out["requests"])
    if owner:
        out["owner_cpu_ms_per_request"] = owner * 1000 / max(1, out["requests"])
    return out


_TRIVIAL = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"live\":true}"


def _trivial_server(ready) -> None:
    """A fixed 200 for every request on a keep-alive connection (the client's own ceiling)."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass

    class Answer(asyncio.Protocol):
        def connection_made(self, transport):
            self.t, self.buf = transport, b""

        def data_received(self, data):
            self.buf += data
            n = self.buf.count(b"\r\n\r\n")
            if n:
                self.buf = self.buf[self.buf.rindex(b"\r\n\r\n") + 4:]
                self.t.write(_TRIVIAL * n)

    async def serve():
        server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", 0)
        ready.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(serve())


def client_floor(clients: int, warmup_s: float, seconds: float) -> dict:
    ctx = mp.get_context("spawn")
    ready: mp.Queue = ctx.Queue()
    server = ctx.Process(target=_trivial_server, args=(ready,), daemon=True)
    server.start()
    try:
        port = ready.get(timeout=60)
        return load(f"http://127.0.0.1:{port}", ["/live"], {}, clients, warmup_s, seconds)
    finally:
        server.kill()
        server.join(10)


def summary(lat: list[float], elapsed: float, statuses: dict | None = None) -> dict:
    lat = sorted(lat)
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [lat[0] * 1000] * 99
    return {"requests": len(lat), "requests_per_s": len(lat) / elapsed, "p50_ms": q[49] * 1000,
            "p95_ms": q[94] * 1000, "p99_ms": q[98] * 1000, "statuses": {str(k): v for k, v in (statuses or {}).items()}}


# --- floors (in this process, same concurrency) ---------------------------------------------------

async def _closed_loop(fn, clients: int, warmup_s: float, seconds: float) -> dict:
    """``fn(i)`` in ``clients`` loops; loop c passes i = c, c + clients, ... (like the HTTP clients)."""
    async def worker(first: int, until: float, lat: list[float]) -> None:
        i = first
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            await fn(i)
            i += clients
            lat.append(time.perf_counter() - t0)

    warm: list[float] = []
    await asyncio.gather(*(worker(DISTINCT // 2 + c, time.perf_counter() + warmup_s, warm) for c in range(clients)))
    lat: list[float] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c, t0 + seconds, lat) for c in range(clients)))
    return summary(lat, time.perf_counter() - t0)


async def redis_floor(redis_url: str, prefix: str, certificate_id: str, clients: int, warmup_s: float,
                      seconds: float) -> dict:
    import redis.asyncio as aioredis

    ns = prefix.lower().replace(".", "_").replace("-", "_")
    base = f"qi:{ns}lookups:"
    r = aioredis.from_url(redis_url, decode_responses=True, max_connections=clients)

    async def one(_: int):
        gen = await r.get(base + "current")
        async with r.pipeline(transaction=False) as p:
            p.hgetall(f"{base}{gen}:certificates:{certificate_id}")
            p.hgetall(f"{base}{gen}:certificate_validations:{certificate_id}")
            got = await p.execute()
        assert got[0], "the certificate is not in Redis"

    try:
        return await _closed_loop(one, clients, warmup_s, seconds)
    finally:
        await r.aclose()


async def redis_lean_floor(redis_url: str, prefix: str, certificate_id: str, clients: int, warmup_s: float,
                           seconds: float) -> dict | None:
    """The same reads through the API's own Redis client (None on code without it)."""
    try:
        from qi.api.sources.resp import LeanRedis
    except ImportError:
        return None
    ns = prefix.lower().replace(".", "_").replace("-", "_")
    base = f"qi:{ns}lookups:"
    r = LeanRedis(redis_url, connections=2)

    async def one(_: int):
        (gen,) = await r.execute([("GET", base + "current")])
        got = await r.execute([("HGETALL", f"{base}{gen}:certificates:{certificate_id}"),
                               ("HGETALL", f"{base}{gen}:certificate_validations:{certificate_id}")])
        assert got[0], "the certificate is not in Redis"

    try:
        return await _closed_loop(one, clients, warmup_s, seconds)
    finally:
        await r.close()


async def clickhouse_floor(endpoint: str, database: str, params_for, clients: int, warmup_s: float,
                           seconds: float) -> dict:
    """The API's SQL for the 24 h series posted straight to the warehouse's SQL endpoint (aiohttp);
    ``params_for(i)`` gives the i-th request's parameters (the distinct ranges of sensor_24h)."""
    import aiohttp

    from qi.api.routers.sensors import SERIES_FORMAT, SERIES_SQL

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as c:
        async def one(i: int):
            async with c.post(f"{endpoint}/sql", json={"sql": SERIES_SQL, "database": database,
                                                       "parameters": params_for(i), "format": SERIES_FORMAT}) as r:
                body = await r.read()
                assert r.status == 200, body[:300]

        return await _closed_loop(one, clients, warmup_s, seconds)


# --- the run ---------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--api-workers", type=int, default=2, help="uvicorn processes of `qi api`")
    ap.add_argument("--keep", action="store_true", help="keep the stack's directory afterwards")
    ap.add_argument("--only", nargs="+", choices=ROWS, default=list(ROWS), metavar="ROW",
                    help=f"run only these rows ({', '.join(ROWS)}); default: all")
    args = ap.parse_args()
    only = set(args.only)

    from qi.api.auth import Role
    from qi.api.routers.sensors import _us
    from qi.config import (ClickHouseSettings, KafkaSettings, LogSettings, MqttSettings, PostgresSettings,
                           RedisSettings, SchemaRegistrySettings, Settings, StackSettings)
    from qi.platform import Platform
    from qi.stack import LocalStack
    from projections.clickhouse.query import find_endpoint
    from tests.api.world import SENSOR, TWIN, VALID, start_world, stop_world

    shutil.rmtree(RUN_DIR, ignore_errors=True)
    load_before = list(os.getloadavg())
    stack = LocalStack(RUN_DIR / "stack", start_timeout_s=120, log_storage="memory")
    stack.up()
    world = None
    try:
        urls = stack.urls()
        prefix = "bench."
        settings = Settings(
            kafka=KafkaSettings(bootstrap=urls["kafka"], topic_prefix=prefix, partitions=3),
            schema_registry=SchemaRegistrySettings(url=None), postgres=PostgresSettings(dsn=urls["postgres"]),
            clickhouse=ClickHouseSettings(dsn=urls["clickhouse"]), redis=RedisSettings(url=urls["redis"]),
            mqtt=MqttSettings(url=urls["mqtt"]), stack=StackSettings(run_dir=stack.run_dir), log=LogSettings())
        stack_env = {k: v for k, v in os.environ.items() if not k.startswith("QI_")}
        stack_env.update({"QI_KAFKA_BOOTSTRAP": urls["kafka"], "QI_POSTGRES_DSN": urls["postgres"],
                          "QI_REDIS_URL": urls["redis"], "QI_MQTT_URL": urls["mqtt"],
                          "QI_CLICKHOUSE_DSN": urls["clickhouse"], "QI_STACK_RUN_DIR": str(stack.run_dir),
                          "QI_LOG_FORMAT": "json", "PYTHONPATH": str(ROOT)})
        work = RUN_DIR / "world"
        work.mkdir(parents=True)
        print("starting the world (workers, qi api) and waiting for every read model...", flush=True)
        world = start_world(Platform(settings), stack_env, work, QI_API_WORKERS=str(args.api_workers),
                            QI_API_VERIFY_RATE_PER_S="1000000", QI_API_VERIFY_BURST="1000000",
                            QI_LOG_LEVEL="warning")
        rows = []
        both = {"clients": args.clients, "warmup_s": args.warmup, "seconds": args.seconds}
        api_pid, owner_pid = world.procs["api"].proc.pid, world.procs["warehouse"].proc.pid
        cf = live = None
        if "client_floor" in only:
            print(f"client_floor: {args.clients} clients, {args.seconds:.0f} s", flush=True)
            cf = client_floor(**both)
        if "api_live" in only:
            print(f"api_live: {args.clients} clients, {args.seconds:.0f} s", flush=True)
            live = load(world.url, ["/live"], {}, **both, cpu_pid=api_pid)
        if "verify" in only:
            print(f"verify: {args.clients} clients, {args.seconds:.0f} s", flush=True)
            v = load(world.url, [f"/verify/{VALID}"], {}, **both, cpu_pid=api_pid)
            vf = asyncio.run(redis_floor(urls["redis"], prefix, VALID, args.clients, args.warmup, args.seconds))
            vl = asyncio.run(redis_lean_floor(urls["redis"], prefix, VALID, args.clients, args.warmup, args.seconds))
            rows.append({"name": "verify", **v, "floor_per_s": vf["requests_per_s"], "floor_p50_ms": vf["p50_ms"],
                         "floor_p99_ms": vf["p99_ms"], "floor_lean_per_s": vl and vl["requests_per_s"]})
        # sensor_24h: request k asks for the 24 h ending k seconds before the newest reading's minute
        to = world.now + timedelta(minutes=1)
        frm = to - timedelta(hours=24)
        fmt = "%Y-%m-%dT%H:%M:%SZ"

        def series_path(k: int) -> str:
            return (f"/sensors/{TWIN}/{SENSOR}/readings?from={(frm - timedelta(seconds=k)).strftime(fmt)}"
                    f"&to={(to - timedelta(seconds=k)).strftime(fmt)}&max_points=1000")

        reader = {"Authorization": f"Bearer {world.token(Role.reader, 'bench')}"}
        s = shared = None
        if "sensor_24h" in only:
            print(f"sensor_24h (a range per request): {args.clients} clients, {args.seconds:.0f} s", flush=True)
            s = load(world.url, [series_path(k) for k in range(DISTINCT)], reader, **both, cpu_pid=api_pid,
                     owner_pid=owner_pid)
        if "sensor_24h_shared" in only:
            print(f"sensor_24h_shared (one range for all): {args.clients} clients, {args.seconds:.0f} s", flush=True)
            shared = load(world.url, [series_path(0)], reader, **both, cpu_pid=api_pid, owner_pid=owner_pid)
        sf = one = None
        if s is not None or shared is not None:
            endpoint = find_endpoint(work, f"chdb://{work / 'chdb'}")
            f_us, t_us = _us(frm.replace(tzinfo=UTC)), _us(to.replace(tzinfo=UTC))

            def params_for(i: int) -> dict:
                k = (i % DISTINCT) * 1_000_000
                return {"twin": TWIN, "sensor": SENSOR, "from_us": f_us - k, "to_us": t_us - k,
                        "bucket_us": max(1, -(-(t_us - f_us) // 1000))}

            sf = asyncio.run(clickhouse_floor(endpoint, "qi", params_for, args.clients, args.warmup, args.seconds))
            one = asyncio.run(clickhouse_floor(endpoint, "qi", params_for, 1, 1.0, 3.0))
            print(f"one query at a time on the warehouse endpoint: p50 {one['p50_ms']:.1f} ms", flush=True)
        for name, r in (("sensor_24h", s), ("sensor_24h_shared", shared)):
            if r is not None:
                rows.append({"name": name, **r, "floor_per_s": sf["requests_per_s"], "floor_p50_ms": sf["p50_ms"],
                             "floor_p99_ms": sf["p99_ms"]})
        for name, r in (("client_floor", cf), ("api_live", live)):
            if r is not None:
                rows.append({"name": name, **r, "floor_per_s": cf and cf["requests_per_s"],
                             "floor_p50_ms": cf and cf["p50_ms"], "floor_p99_ms": cf and cf["p99_ms"]})
        table = [{**{k: r[k] for k in ("name", "requests_per_s", "p50_ms", "p95_ms", "p99_ms", "floor_per_s",
                                       "floor_p50_ms", "floor_p99_ms")}, "cpu_ms_per_req": r.get("cpu_ms_per_request"),
                  "owner_cpu_ms_per_req": r.get("owner_cpu_ms_per_request")}
                 for r in rows]
        path_out = report("api", table, params={**vars(args), "machine_note": "shared 2-core machine, loaded"})
        doc = json.loads(path_out.read_text())
        for r in rows:
            doc[r["name"]] = {k: r[k] for k in ("requests", "requests_per_s", "p50_ms", "p95_ms", "p99_ms",
                                                "floor_per_s", "floor_p50_ms", "floor_p99_ms", "statuses")}
            doc[r["name"]].update({k: r[k] for k in ("cpu_ms_per_request", "owner_cpu_ms_per_request",
                                                     "floor_lean_per_s") if k in r})
        if one is not None:
            doc["sensor_24h_single_query_p50_ms"] = one["p50_ms"]
        doc["load_average"] = {"before": load_before, "after": list(os.getloadavg())}
        doc["goals"] = {"verify": {"requests_per_s": 2000, "p99_ms": 50}, "sensor_24h": {"p95_ms": 200}}
        path_out.write_text(json.dumps(doc, indent=2))
        for r in rows:
            bad = {k: n for k, n in r["statuses"].items() if k != "200"}
            if bad:
                print(f"{r['name']}: non-200 answers {bad}")
    finally:
        if world is not None:
            stop_world(world)
        stack.down(purge=True)
        if not args.keep:
            shutil.rmtree(RUN_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
