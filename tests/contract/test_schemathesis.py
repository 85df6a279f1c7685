"""The contract tier: schemathesis against the real server, every check, every phase.

schemathesis (all checks; examples, coverage, fuzzing and stateful phases) drives a real
server process on a private redis-server with a doctor's and a patient's tokens (``hooks.py``
picks the role per route) and must find no failure and no server error. A fixed seed and a
bounded number of examples keep it to a few minutes; ``HEALTHMED_CONTRACT_EXAMPLES`` and
``HEALTHMED_CONTRACT_SEED`` change them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, ServerProcess, private_server, timeout

HERE = Path(__file__).resolve().parent
EXAMPLES = os.environ.get("HEALTHMED_CONTRACT_EXAMPLES", "15")
SEED = os.environ.get("HEALTHMED_CONTRACT_SEED", "12")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # The fuzzer sends wrong passwords by the thousand (logins, erasure, password change,
    # 2FA): the failed-login limiter would answer 429 to everything after the fifth. Its
    # behaviour is tested in tests/e2e; here the routes behind it are.
    limits = {"HEALTHMED_LOGIN_FAIL_LIMIT_ACCOUNT": "1000000",
              "HEALTHMED_LOGIN_FAIL_LIMIT_ADDRESS": "1000000"}  # fmt: skip
    with private_server(Path(tmp_path_factory.mktemp("server")), **limits) as proc:
        yield proc


def test_schemathesis_finds_no_failure(server: ServerProcess, tmp_path: Path) -> None:
    """Every operation of the OpenAPI document, both roles, all checks and phases: zero
    failures, zero server errors."""
    schemathesis = Path(sys.executable).with_name("schemathesis")
    command = [
        str(schemathesis),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        server.url + "/schema/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.contract.hooks",
        "HEALTHMED_CONTRACT_URL": server.url,
        "HEALTHMED_CONTRACT_SEED": SEED,
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout(600),
        check=False,
    )
    report = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(report)
    summary = report[report.rfind("SUMMARY") :] if "SUMMARY" in report else report[-4000:]
    print(summary)
    assert run.returncode == 0, report[-12000:]
    assert "Tested: " in report
