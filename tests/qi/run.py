"""Run the `qi` command as a user would: a subprocess of this interpreter, at the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def qi(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qi", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
