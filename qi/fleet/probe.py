"""Ask a running worker instance how it is: its /health document and its /metrics samples.

Every worker announces its health URL in ``<run dir>/health/<instance>.json``
(:mod:`streams.health`); ``qi ps``, ``qi demo``, the platform benchmark and the
operations tests read workers through these functions only.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from streams.health import announced_url


class NoAnswer(Exception):
    """The instance has announced no URL, or did not answer it."""


def health(run_dir: Path, instance: str, timeout_s: float = 1.0) -> dict:
    """The instance's /health document (``ready``, ``lag``, ...)."""
    url = announced_url(run_dir, instance)
    if url is None:
        raise NoAnswer(f"{instance} has announced no health URL")
    try:
        return httpx.get(f"{url}/health", timeout=timeout_s).json()
    except (httpx.HTTPError, ValueError) as e:
        raise NoAnswer(f"{instance} did not answer {url}/health: {e}") from e


def is_ready(run_dir: Path, instance: str) -> bool:
    try:
        return bool(health(run_dir, instance).get("ready"))
    except NoAnswer:
        return False


def metrics(run_dir: Path, instance: str, timeout_s: float = 2.0) -> dict[str, dict[tuple, float]]:
    """Samples of the instance's /metrics: name -> {sorted label items: value}."""
    url = announced_url(run_dir, instance)
    if url is None:
        raise NoAnswer(f"{instance} has announced no health URL")
    try:
        text = httpx.get(f"{url}/metrics", timeout=timeout_s).text
    except httpx.HTTPError as e:
        raise NoAnswer(f"{instance} did not answer {url}/metrics: {e}") from e
    out: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name][tuple(sorted(s.labels.items()))] = s.value
    return dict(out)


def total(samples: dict[str, dict[tuple, float]], name: str, **labels: str) -> float:
    """Sum of ``name`` over the samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for k, v in samples.get(name, {}).items() if want <= set(k))
