"""What the embedded mode leaves on disk is the server user's alone."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e._accounts import patient_body
from tests.support import ServerProcess


def test_the_data_directory_and_database_are_private(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A server given a data directory made world-readable by whoever created it leaves it
    0700 and its SQLite files (database, WAL, shared memory) 0600 once it serves."""
    data_dir = tmp_path / "shared" / "data"
    data_dir.mkdir(parents=True)
    data_dir.chmod(0o755)
    server = start_server(data_dir=data_dir, HEALTHMED_ENV="test")
    r = httpx.post(server.url + "/v1/patients", json=patient_body(7_700_001), timeout=30)
    assert r.status_code == 201, r.text
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    files = list(data_dir.glob("*.sqlite3*"))
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
