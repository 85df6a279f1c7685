"""The GitHub workflows lint clean and deploy what the issue asks: by digest, with OIDC."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def test_workflows_pass_actionlint() -> None:
    """actionlint finds nothing in .github/workflows."""
    binary = shutil.which("actionlint", path=str(Path(sys.executable).parent))
    assert binary, "actionlint is not installed (dev extras)"
    result = subprocess.run([binary], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pull_requests_run_the_ci_script() -> None:
    """Pull requests run .ci/run (lint, checkov, the whole suite)."""
    ci = _load("ci.yml")
    assert "pull_request" in ci[True]  # YAML 1.1 reads the key `on` as True
    steps = [s.get("run", "") for s in ci["jobs"]["test"]["steps"]]
    assert any("bash .ci/run" in run for run in steps)


def test_main_deploys_by_digest_with_oidc_credentials() -> None:
    """main scans before pushing, deploys the pushed digest, and never uses stored AWS keys."""
    main = _load("main.yml")
    text = (WORKFLOWS / "main.yml").read_text()
    assert main[True]["push"]["branches"] == ["main"]
    image, deploy = main["jobs"]["image"], main["jobs"]["deploy"]
    uses = [s.get("uses", "").split("@")[0] for s in image["steps"]]
    assert uses.index("aquasecurity/trivy-action") < uses.index("aws-actions/amazon-ecr-login")
    assert image["outputs"]["digest"] == "${{ steps.build.outputs.digest }}"
    for job in (image, deploy):
        assert job["permissions"]["id-token"] == "write"
        creds = [s for s in job["steps"] if "configure-aws-credentials" in s.get("uses", "")]
        assert creds
        assert set(creds[0]["with"]) == {"role-to-assume", "aws-region"}
    assert "aws-access-key-id" not in text
    assert "AWS_SECRET_ACCESS_KEY" not in text
    run = next(s for s in deploy["steps"] if "release.sh" in s.get("run", ""))
    assert run["env"]["IMAGE"].endswith("@${{ needs.image.outputs.digest }}")


def test_release_pins_the_production_overlay_to_a_digest(tmp_path: Path) -> None:
    """k8s/release.sh renders production with the image by digest, and refuses a tag."""
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    script = tmp_path / "k8s" / "release.sh"
    digest = "sha256:" + "ab" * 32
    subprocess.run(["sh", str(script), f"registry.example/healthmed@{digest}"], check=True)
    kubectl = shutil.which("kubectl")
    assert kubectl
    out = subprocess.run(
        [kubectl, "kustomize", str(tmp_path / "k8s" / "overlays" / "release")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    deployment = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"registry.example/healthmed@{digest}"
    refused = subprocess.run(
        ["sh", str(script), "registry.example/healthmed:latest"], capture_output=True, check=False
    )
    assert refused.returncode == 2


@pytest.mark.parametrize("name", ["ci.yml", "main.yml"])
def test_workflows_default_to_read_only_tokens(name: str) -> None:
    """Each workflow's default token can only read the repository."""
    assert _load(name)["permissions"] == {"contents": "read"}
