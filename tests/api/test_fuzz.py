"""Schemathesis fuzzes the OpenAPI schema against the running `qi api` (a real server process on
the API world) with an admin token: no 5xx, and every response matches the schema."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qi.api.auth import Role

pytestmark = pytest.mark.stack

INTERPRETER_BUG = "AST constructor recursion depth mismatch"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


@pytest.mark.timeout(300)
def test_openapi_schema_fuzzed_no_5xx_and_responses_conform(api_world, tmp_path) -> None:
    st = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    report = tmp_path / "junit.xml"
    argv = [st, "run", f"{api_world.url}/openapi.json", "--checks", CHECKS,
         "--phases", "examples,coverage,fuzzing", "--max-examples", "25", "--seed", "10",
         "-H", f"Authorization: Bearer {api_world.token(Role.admin, 'fuzzer')}",
         "--request-timeout", "30", "--workers", "1", "--report", "junit", "--report-junit-path", str(report),
         "--suppress-health-check", "all"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=140)
    out = p.stdout + p.stderr
    if p.returncode != 0 and INTERPRETER_BUG in out:
        # a CPython 3.11 ast-validator SystemError can crash schemathesis itself (not our API):
        # run it once more; any finding about the API still fails the test.
        p = subprocess.run(argv, capture_output=True, text=True, timeout=140)
        out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    assert "passed" in out.lower()
