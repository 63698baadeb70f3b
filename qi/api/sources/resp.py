"""A lean Redis client for the API's read path: pipelined commands multiplexed on a few connections.

redis-py's asyncio pipeline (8.1, no hiredis) costs ~0.5-0.8 ms of CPU per two-command pipeline on
this machine, more than the rest of a verification (docs/decisions/0120). The API's lookups only
need a handful of read commands (GET, HGETALL, PING), so this client does just that:

* each request queues its commands and waits for one future; what the requests of one event-loop
  iteration queued goes out in one ``transport.write`` (one syscall, one read for Redis). Redis
  answers a connection's commands in order, so replies are matched to requests by a FIFO and
  many requests share a connection (no pool lock, no connection per request);
* RESP2 replies are parsed from the connection's buffer as they arrive (bulk strings decoded as
  UTF-8, arrays, integers, simple strings; an error reply becomes :class:`RespError` for that
  request only);
* a connection that fails or times out fails every request waiting on it and is dropped; the next
  request reconnects. Errors are :class:`RespError` (a reply) or ``OSError`` / ``TimeoutError``.

URLs: ``redis://[[user]:password@]host[:port][/db]`` and ``unix:///path[?db=N]`` (AUTH and SELECT
are sent on connect). No TLS, no RESP3, no pub/sub: use redis-py for anything else.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


class RespError(Exception):
    """An error reply from Redis (``-ERR ...``)."""


def pack(commands: Sequence[Sequence[str]]) -> bytes:
    """Commands in RESP's request form (arrays of bulk strings), concatenated."""
    out = []
    for cmd in commands:
        out.append(b"*%d\r\n" % len(cmd))
        for arg in cmd:
            b = arg.encode() if isinstance(arg, str) else bytes(arg)
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Incomplete(Exception):
    pass


def _parse(buf: bytes, i: int) -> tuple[Any, int]:
    """One reply starting at ``buf[i]``: (value, index after it); ``_Incomplete`` if not all here."""
    end = buf.find(b"\r\n", i)
    if end < 0:
        raise _Incomplete
    kind = buf[i]
    if kind == 36:  # $ bulk string
        n = int(buf[i + 1:end])
        if n < 0:
            return None, end + 2
        stop = end + 2 + n
        if len(buf) < stop + 2:
            raise _Incomplete
        return buf[end + 2:stop].decode(), stop + 2
    if kind == 42:  # * array; its bulk strings (all of HGETALL's) parsed inline: the hot path
        n = int(buf[i + 1:end])
        if n < 0:
            return None, end + 2
        i = end + 2
        size = len(buf)
        find = buf.find
        items = []
        append = items.append
        for _ in range(n):
            if i >= size:
                raise _Incomplete
            if buf[i] == 36:
                end = find(b"\r\n", i)
                if end < 0:
                    raise _Incomplete
                k = int(buf[i + 1:end])
                if k < 0:
                    append(None)
                    i = end + 2
                    continue
                i = end + 2 + k
                if size < i + 2:
                    raise _Incomplete
                append(buf[end + 2:i].decode())
                i += 2
            else:
                v, i = _parse(buf, i)
                append(v)
        return items, i
    if kind == 58:  # : integer
        return int(buf[i + 1:end]), end + 2
    if kind == 43:  # + simple string
        return buf[i + 1:end].decode(), end + 2
    if kind == 45:  # - error
        return RespError(buf[i + 1:end].decode(errors="replace")), end + 2
    raise RespError(f"unexpected reply type {chr(kind)!r}")


class _Connection(asyncio.Protocol):
    """One socket; requests in flight in a FIFO, each waiting for ``n`` replies."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.waiting: deque[tuple[asyncio.Future, int, list]] = deque()
        self.lost: BaseException | None = None
        self.out: list[bytes] = []  # written once per loop iteration: one syscall for every request of it

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        i = 0
        try:
            while self.waiting and i < len(buf):
                fut, n, got = self.waiting[0]
                while len(got) < n:
                    v, i = _parse(buf, i)
                    got.append(v)
                self.waiting.popleft()
                if not fut.done():
                    fut.set_result(got)
        except _Incomplete:
            pass
        except (RespError, ValueError, UnicodeDecodeError) as e:  # a broken stream: nothing after it can be trusted
            self.fail(RespError(f"unreadable reply from Redis: {e}"))
            return
        self.buf = buf[i:]
        if self.buf and not self.waiting:
            self.fail(RespError("a reply nobody asked for"))

    def connection_lost(self, exc) -> None:
        self.fail(exc or ConnectionResetError("Redis closed the connection"))

    def fail(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        while self.waiting:
            fut = self.waiting.popleft()[0]
            if not fut.done():
                fut.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes, n: int) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.waiting.append((fut, n, []))
        if not self.out:
            loop.call_soon(self.flush)
        self.out.append(data)
        return fut

    def flush(self) -> None:
        data, self.out = b"".join(self.out), []
        if self.lost is None and data:
            self.transport.write(data)


class LeanRedis:
    """``await execute([("GET", k), ("HGETALL", k2)])`` -> the replies, in order, one round trip.

    Requests are spread over ``connections`` sockets (opened on first use, round robin)."""

    def __init__(self, url: str, *, connections: int = 2, timeout_s: float = 5.0, connect_timeout_s: float = 2.0) -> None:
        u = urlsplit(url)
        query = parse_qs(u.query)
        self._unix = u.path if u.scheme == "unix" else None
        if u.scheme not in ("redis", "unix"):
            raise ValueError(f"LeanRedis speaks redis:// and unix:// only, not {u.scheme}://")
        self._host, self._port = u.hostname or "127.0.0.1", u.port or 6379
        db = query.get("db", [None])[0] if self._unix else (u.path.strip("/") or None)
        self._hello: list[tuple[str, ...]] = []
        if u.password is not None:
            pw = unquote(u.password)
            self._hello.append(("AUTH", unquote(u.username), pw) if u.username else ("AUTH", pw))
        if db not in (None, "", "0"):
            self._hello.append(("SELECT", str(int(db))))
        self._n = max(1, connections)
        self._conns: list[_Connection | None] = [None] * self._n
        self._opening: list[asyncio.Future | None] = [None] * self._n
        self._next = 0
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s

    async def _open(self, slot: int) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout_s):
            if self._unix:
                _, conn = await loop.create_unix_connection(_Connection, self._unix)
            else:
                _, conn = await loop.create_connection(_Connection, self._host, self._port)
        if self._hello:
            async with asyncio.timeout(self.timeout_s):
                for reply in await conn.send(pack(self._hello), len(self._hello)):
                    if isinstance(reply, RespError):
                        conn.fail(reply)
                        raise reply
        self._conns[slot] = conn
        return conn

    async def _conn(self) -> _Connection:
        slot = self._next
        self._next = (slot + 1) % self._n
        conn = self._conns[slot]
        if conn is not None and conn.lost is None:
            return conn
        self._conns[slot] = None
        opening = self._opening[slot]
        if opening is None:  # one connect per slot at a time; others wait for it
            opening = self._opening[slot] = asyncio.ensure_future(self._open(slot))
            opening.add_done_callback(lambda f, s=slot: self._opened(s, f))
        return await asyncio.shield(opening)

    def _opened(self, slot: int, fut: asyncio.Future) -> None:
        self._opening[slot] = None
        if not fut.cancelled():
            fut.exception()  # retrieved: the waiters raise it

    async def execute(self, commands: Sequence[Sequence[str]]) -> list[Any]:
        """The replies of ``commands`` (sent together); an error reply raises :class:`RespError`."""
        conn = await self._conn()
        fut = conn.send(pack(commands), len(commands))
        timer = asyncio.get_running_loop().call_later(self.timeout_s, self._expire, conn, fut)
        try:
            replies = await fut
        finally:
            timer.cancel()
        for r in replies:
            if isinstance(r, RespError):
                raise r
        return replies

    def _expire(self, conn: _Connection, fut: asyncio.Future) -> None:
        if not fut.done():  # the connection's order is lost with this reply: drop it and everyone on it
            conn.fail(TimeoutError(f"no reply from Redis within {self.timeout_s} s"))

    async def close(self) -> None:
        for i, c in enumerate(self._conns):
            if c is not None:
                c.fail(ConnectionAbortedError("closed"))
                self._conns[i] = None


def hash_of(reply: list[str] | None) -> dict[str, str]:
    """An HGETALL reply (field, value, field, value, ...) as a dict."""
    if not reply:
        return {}
    it = iter(reply)
    return dict(zip(it, it))
