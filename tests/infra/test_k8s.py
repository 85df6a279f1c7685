"""The kustomize overlays render, validate against Kubernetes' schemas and say what they must."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.infra._k8s import OVERLAYS, container, kinds, one, render, selects

KUBERNETES = "1.32.0"
"""The oldest Kubernetes the manifests are validated for (EKS standard support)."""


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_strictly(overlay: str) -> None:
    """Each object `kubectl kustomize` renders passes the schema, unknown fields refused."""
    objects = render(overlay)
    assert {"Deployment", "Service", "ServiceAccount", "ConfigMap", "NetworkPolicy"} <= kinds(
        overlay
    )
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_validation_rejects_a_broken_object() -> None:
    """The schema check is real: a Deployment with a misspelt field fails it."""
    bad = dict(one("production", "Deployment"))
    bad["spec"] = {**bad["spec"], "replica": 3}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_the_health_endpoints(overlay: str) -> None:
    """Liveness probes /health/live, readiness /health/ready, both on the served port."""
    main = container(overlay)
    port = {p["name"]: p["containerPort"] for p in main["ports"]}["http"]
    assert main["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert main["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert main["startupProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert main[probe]["httpGet"]["port"] in ("http", port)
    settings = one(overlay, "ConfigMap", _settings_name(overlay))["data"]
    assert int(settings["HEALTHMED_PORT"]) == port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_security_context_is_locked_down(overlay: str) -> None:
    """Non-root, read-only root filesystem, no privilege escalation, every capability dropped."""
    pod = one(overlay, "Deployment")["spec"]["template"]["spec"]
    ctx = container(overlay)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert "add" not in ctx["capabilities"]
    writable = {m["mountPath"] for m in container(overlay)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert all("emptyDir" in volumes[m["name"]] for m in container(overlay)["volumeMounts"])
    settings = one(overlay, "ConfigMap", _settings_name(overlay))["data"]
    assert settings["HEALTHMED_DATA_DIR"] in writable


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_fits_prestop_and_drain(overlay: str) -> None:
    """terminationGracePeriodSeconds covers preStop + HEALTHMED_DRAIN_SECONDS + in-flight work."""
    pod = one(overlay, "Deployment")["spec"]["template"]["spec"]
    command = container(overlay)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = int(
        one(overlay, "ConfigMap", _settings_name(overlay))["data"]["HEALTHMED_DRAIN_SECONDS"]
    )
    assert pod["terminationGracePeriodSeconds"] >= int(command[1]) + drain + 10


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_resources_are_requested_and_limited(overlay: str) -> None:
    """Requests and limits are set, limits at or above requests."""
    res = container(overlay)["resources"]
    assert set(res["requests"]) == {"cpu", "memory"} == set(res["limits"])
    assert _mib(res["limits"]["memory"]) >= _mib(res["requests"]["memory"]) >= 256


def test_hpa_and_pdb_select_the_deployments_pods() -> None:
    """Production's HPA scales the Deployment; its PDB and Service select exactly its pods."""
    deployment = one("production", "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"], labels)
    hpa = one("production", "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["minReplicas"] >= 2
    assert selects(one("production", "PodDisruptionBudget")["spec"]["selector"], labels)
    assert selects({"matchLabels": one("production", "Service")["spec"]["selector"]}, labels)
    assert selects(one("production", "NetworkPolicy")["spec"]["podSelector"], labels)
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    zone = next(c for c in spread if c["topologyKey"] == "topology.kubernetes.io/zone")
    assert zone["whenUnsatisfiable"] == "DoNotSchedule"
    assert selects(zone["labelSelector"], labels)


def test_selector_check_is_real() -> None:
    """The selector helper rejects pods whose labels differ."""
    assert not selects({"matchLabels": {"app": "a"}}, {"app": "b"})
    assert not selects({}, {"app": "a"})


def test_dev_is_one_embedded_replica() -> None:
    """dev runs one replica on the embedded default: no HPA, no PDB, no external settings."""
    assert one("dev", "Deployment")["spec"]["replicas"] == 1
    assert not kinds("dev") & {"HorizontalPodAutoscaler", "PodDisruptionBudget"}
    settings = one("dev", "ConfigMap", _settings_name("dev"))["data"]
    assert (
        not {"HEALTHMED_REDIS_URL", "HEALTHMED_STORE_URL", "HEALTHMED_BLOB_URL"} & settings.keys()
    )


def test_production_uses_external_engines_and_irsa() -> None:
    """Production points at DynamoDB, S3, KMS and a Redis Cluster; secrets are only referenced."""
    settings = one("production", "ConfigMap", _settings_name("production"))["data"]
    assert settings["HEALTHMED_ENV"] == "production"
    assert settings["HEALTHMED_STORE_URL"].startswith("dynamodb://")
    assert settings["HEALTHMED_BLOB_URL"].startswith("s3://")
    assert settings["HEALTHMED_KMS_KEY_ID"]
    assert settings["HEALTHMED_REDIS_CLUSTER"] == "true"
    assert "Secret" not in kinds("production"), "secrets are created out of band"
    refs = [e["secretRef"]["name"] for e in container("production")["envFrom"] if "secretRef" in e]
    assert refs == ["healthmed-secrets"]
    account = one("production", "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
        "arn:aws:iam::"
    )
    pod = one("production", "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def _settings_name(overlay: str) -> str:
    (name,) = [
        o["metadata"]["name"]
        for o in render(overlay)
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("healthmed-settings-")
    ]
    return name


def _mib(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity.removesuffix(suffix)) * factor
    return float(quantity) / 2**20
