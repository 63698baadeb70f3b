"""Ask a running worker instance how it is: its /health document and its /metrics samples.

Every worker announces its health URL in ``<run dir>/health/<instance>.json``
(:mod:`streams.health`); ``qi ps``, ``qi demo``, the platform benchmark and the
operations tests read workers through these functions only.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from qi.fleet.supervisor import load_state
from streams.health import announced_url

Samples = dict[str, dict[tuple, float]]


class NoAnswer(Exception):
    """The instance has announced no URL (``announced`` False), or did not answer it."""

    def __init__(self, message: str, *, announced: bool) -> None:
        super().__init__(message)
        self.announced = announced


def get(run_dir: Path, instance: str, path: str, timeout_s: float = 1.0) -> httpx.Response:
    """GET ``path`` (e.g. /ready) from the instance's announced address."""
    url = announced_url(run_dir, instance)
    if url is None:
        raise NoAnswer(f"{instance} has announced no health URL", announced=False)
    try:
        return httpx.get(f"{url}{path}", timeout=timeout_s)
    except httpx.HTTPError as e:
        raise NoAnswer(f"{instance} did not answer {url}{path}: {e}", announced=True) from e


def health(run_dir: Path, instance: str, timeout_s: float = 1.0) -> dict:
    """The instance's /health document (``ready``, ``lag``, ...)."""
    try:
        return get(run_dir, instance, "/health", timeout_s).json()
    except ValueError as e:
        raise NoAnswer(f"{instance} answered /health with something else than JSON", announced=True) from e


def is_ready(run_dir: Path, instance: str, *, caught_up: bool = False) -> bool:
    """Ready; with ``caught_up``, also at lag 0."""
    try:
        h = health(run_dir, instance)
    except NoAnswer:
        return False
    return bool(h.get("ready")) and (not caught_up or h.get("lag", 0) == 0)


def is_caught_up_with(run_dir: Path, instance: str, ends: dict[str, int]) -> bool:
    """Ready, at lag 0, and that lag taken against log ends no older than ``ends``
    (``{"topic/partition": end offset}``, read from the broker before asking): lag 0 alone may be
    against a fetch answered before the last records were appended. An instance that reads no
    partition (the bridge, the API) only has to be ready."""
    try:
        h = health(run_dir, instance)
    except NoAnswer:
        return False
    seen = h.get("log_ends_seen", {})
    return (bool(h.get("ready")) and h.get("lag", 0) == 0
            and all(end >= ends.get(tp, 0) for tp, end in seen.items()))


def metrics(run_dir: Path, instance: str, timeout_s: float = 2.0) -> Samples:
    """Samples of the instance's /metrics: name -> {sorted label items: value}."""
    out: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(get(run_dir, instance, "/metrics", timeout_s).text):
        for s in family.samples:
            out[s.name][tuple(sorted(s.labels.items()))] = s.value
    return dict(out)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over the samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for k, v in samples.get(name, {}).items() if want <= set(k))


def wait_ready(run_dir: Path, names: list[str], *, timeout_s: float, caught_up: bool = False) -> None:
    """Until every instance is ready (and, with ``caught_up``, at lag 0); TimeoutError naming the rest."""
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = [n for n in names if not is_ready(run_dir, n, caught_up=caught_up)]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {'caught up' if caught_up else 'ready'} after {timeout_s:.0f} s: "
                               + ", ".join(waiting))
        time.sleep(0.2)


def wait_restarted(run_dir: Path, instance: str, old_pid: int, *, timeout_s: float) -> float:
    """Seconds until the supervisor runs ``instance`` in a process other than ``old_pid`` and it is ready."""
    t0 = time.monotonic()
    while True:
        state = load_state(run_dir)
        st = state.instances.get(instance) if state else None
        if st and st.state == "running" and st.pid not in (None, old_pid) and is_ready(run_dir, instance):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"{instance} not ready again {timeout_s:.0f} s after pid {old_pid} ended: {st}")
        time.sleep(0.05)


def spare_waiting(run_dir: Path, instance: str) -> int | None:
    """The pid of the instance's warm spare once it logged that it waits at its gate, else None."""
    state = load_state(run_dir)
    st = state.instances.get(instance) if state else None
    spare = st.standby_pid if st else None
    if spare is None or st is None:
        return None
    try:
        lines = Path(st.log).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if '"standby.waiting"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "standby.waiting" and entry.get("pid") == spare:
            return spare
    return None


def wait_spares(run_dir: Path, names: list[str], *, timeout_s: float) -> dict[str, int]:
    """Until every instance's warm spare waits at its gate; their pids. TimeoutError naming the rest."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = {n: spare_waiting(run_dir, n) for n in names}
        if all(got.values()):
            return got  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no warm spare after {timeout_s:.0f} s: " + ", ".join(n for n, p in got.items() if not p))
        time.sleep(0.2)
