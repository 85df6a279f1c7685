"""The image's runtime, installed outside Docker exactly as its build stage installs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.infra._dockerfile import DOCKERFILE, env, exec_form, stage
from tests.support import ROOT, free_port, timeout, wait_until

DEV_ONLY = ("ruff", "mypy", "moto", "hypothesis", "pytest", "uv", "checkov")
"""Packages of the dev extras (or of CI) that must not be in the image."""


def _bin(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed (dev extras)"
    return found


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv made by docker/install-runtime.sh from a copy of what the image copies."""
    src = tmp_path_factory.mktemp("src")
    for word, rest in stage("build"):
        if word != "COPY":
            continue
        *sources, dest = rest.split()
        for item in sources:
            target = src / dest / Path(item).name if dest.endswith("/") else src / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / item).is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
                shutil.copytree(ROOT / item, target, ignore=ignore)
            else:
                shutil.copy2(ROOT / item, target)
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    subprocess.run(
        ["sh", str(src / "docker/install-runtime.sh"), str(venv), str(src)],
        env={**os.environ, "UV": _bin("uv"), "PYTHON": sys.executable},
        check=True,
        timeout=timeout(300),
    )
    return venv


def test_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing to say about the Dockerfile."""
    result = subprocess.run(
        [_bin("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_unprivileged_on_all_interfaces() -> None:
    """The runtime stage runs as a numeric non-root user and listens on 0.0.0.0."""
    users = [rest for word, rest in stage("runtime") if word == "USER"]
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert uid != "0"
    assert env("runtime")["HEALTHMED_HOST"] == "0.0.0.0"
    copies = [rest for word, rest in stage("runtime") if word == "COPY"]
    assert copies == ["--from=build /opt/healthmed /opt/healthmed"], "runtime copies only the venv"


def test_runtime_has_no_dev_tools(runtime: Path) -> None:
    """The installed runtime holds the locked packages and none of the dev extras."""
    listed = subprocess.run(
        [_bin("uv"), "pip", "list", "--python", str(runtime / "bin/python"), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert {"healthmed", "litestar", "uvicorn"} <= names
    assert not names & set(DEV_ONLY), names & set(DEV_ONLY)


def test_runtime_serves_and_passes_the_image_healthcheck(runtime: Path, tmp_path: Path) -> None:
    """The image's entry point starts from the runtime alone; its HEALTHCHECK command passes."""
    entry = exec_form(next(r for w, r in stage("runtime") if w == "ENTRYPOINT"))
    cmd = exec_form(next(r for w, r in stage("runtime") if w == "CMD"))
    check = next(r for w, r in stage("runtime") if w == "HEALTHCHECK")
    probe = exec_form(check[check.index("CMD") + 3 :].strip())
    port = free_port()
    environ = {
        "PATH": f"{runtime / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        **env("runtime"),
        "HEALTHMED_HOST": "127.0.0.1",  # the image's 0.0.0.0, but this test stays on loopback
        "HEALTHMED_PORT": str(port),
        "HEALTHMED_DATA_DIR": str(tmp_path / "data"),
    }
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(runtime / "bin" / entry[0]), *entry[1:], *cmd],
        cwd=tmp_path,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200

        wait_until(ready, 30, "the server started from the runtime venv")
        result = subprocess.run(
            [str(runtime / "bin" / probe[0]), *probe[1:]],
            env=environ,
            check=False,
            timeout=timeout(10),
        )
        assert result.returncode == 0, "the image's HEALTHCHECK command failed"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout(20))
