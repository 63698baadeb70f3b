"""The by-hand checkpoint check in docs/audit.md works as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

from events.signing import HybridKeyPair
from streams.audit.checkpoint import sign_head

DOC = Path(__file__).resolve().parents[3] / "docs" / "audit.md"


def test_the_documented_snippet_verifies_a_real_checkpoint(tmp_path):
    snippet = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    kp = HybridKeyPair.generate(key_id="doc/1")
    kp.save(tmp_path, "log")
    head = sign_head(kp, "qi-stream.local/audit", 20000, bytes(range(32)))
    (tmp_path / "checkpoint").write_text(head.note)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        ns: dict = {}
        exec(snippet, ns)  # noqa: S102 - the doc's own code
        assert (ns["origin"], ns["size"], ns["root"]) == ("qi-stream.local/audit", "20000", bytes(range(32)))
        # and it rejects a checkpoint whose ML-DSA-65 signature is another key's
        other = sign_head(HybridKeyPair.generate(key_id="x"), "qi-stream.local/audit", 20000, bytes(range(32)))
        lines = head.note.splitlines()
        lines[-1] = other.note.splitlines()[-1]
        (tmp_path / "checkpoint").write_text("\n".join(lines) + "\n")
        try:
            exec(snippet, {})  # noqa: S102
        except Exception as e:  # cryptography's InvalidSignature
            assert type(e).__name__ == "InvalidSignature"
        else:
            raise AssertionError("a foreign ML-DSA-65 signature was accepted")
    finally:
        os.chdir(cwd)
