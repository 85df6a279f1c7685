"""The README's walkthrough (docs/walkthrough.py) runs start to end against a fresh server."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT, ServerProcess, timeout


def test_the_walkthrough_completes(server: ServerProcess) -> None:
    """Every step of the story answers as the walkthrough expects, on a fresh server."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "walkthrough.py"), server.url],
        capture_output=True,
        text=True,
        timeout=timeout(120),
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "walkthrough complete" in run.stdout
    assert "appointment.requested" in run.stdout
