"""Terraform matches the code: the table of engine/store, the IAM actions engine/ calls, and
the settings the production overlay consumes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError

from engine.store._dynamodb import DynamoDBStore
from tests.infra._aws_calls import required_actions, service_calls
from tests.infra._k8s import K8S
from tests.infra._terraform import (
    TERRAFORM,
    blocks,
    parse,
    statements,
    tf_files,
    unquote,
    variables_and_outputs,
)

NOT_GRANTED = {
    "dynamodb:CreateTable": "only dynamodb://<table>?create=true (tests, development) calls it; "
    "production's table is created by infra/terraform/modules/dynamodb",
}
"""Actions engine/ can call that production's role must not have, and why."""


def test_every_tf_file_parses() -> None:
    """python-hcl2 parses every .tf file under infra/terraform."""
    files = tf_files()
    assert len(files) >= 20
    for path in files:
        assert parse(path), path


def test_every_variable_and_output_is_documented() -> None:
    """Each module's and the environment's variables and outputs carry a description."""
    dirs = [p for p in (TERRAFORM / "modules").iterdir() if p.is_dir()]
    dirs.append(TERRAFORM / "envs" / "production")
    for directory in dirs:
        variables, outputs = variables_and_outputs(directory)
        assert outputs, directory
        for name, body in {**variables, **outputs}.items():
            assert body.get("description"), f"{directory.name}: {name} has no description"


class _RecordingClient:
    """Stands in for the DynamoDB client to capture the table the store itself would create."""

    def __init__(self) -> None:
        self.created: dict[str, Any] = {}

    async def describe_table(self, **_: Any) -> None:
        raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "DescribeTable")

    async def create_table(self, **kwargs: Any) -> None:
        self.created = kwargs

    def get_waiter(self, _: str) -> Any:
        class _Waiter:
            async def wait(self, **_: Any) -> None:
                return None

        return _Waiter()


def _store_table() -> dict[str, Any]:
    client = _RecordingClient()
    store = DynamoDBStore.__new__(DynamoDBStore)
    store._table, store._client = "t", client  # type: ignore[attr-defined]
    asyncio.run(store._ensure_table(True))
    return client.created


def test_dynamodb_table_is_the_one_the_store_creates() -> None:
    """Keys, attribute types, gsi1 and billing are those of the store's own create_table."""
    want = _store_table()
    (table,) = blocks("dynamodb", "resource", "aws_dynamodb_table").values()
    keys = {k["KeyType"]: k["AttributeName"] for k in want["KeySchema"]}
    assert (table["hash_key"], table["range_key"]) == (keys["HASH"], keys["RANGE"])
    assert table["billing_mode"] == want["BillingMode"]
    assert {(a["name"], a["type"]) for a in table["attribute"]} == {
        (a["AttributeName"], a["AttributeType"]) for a in want["AttributeDefinitions"]
    }
    (index,) = want["GlobalSecondaryIndexes"]
    (gsi,) = table["global_secondary_index"]
    index_keys = {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]}
    assert gsi["name"] == index["IndexName"]
    assert (gsi["hash_key"], gsi["range_key"]) == (index_keys["HASH"], index_keys["RANGE"])
    assert gsi["projection_type"] == index["Projection"]["ProjectionType"]


def test_dynamodb_table_is_protected() -> None:
    """PITR, KMS encryption with the project's key and deletion protection are on."""
    (table,) = blocks("dynamodb", "resource", "aws_dynamodb_table").values()
    assert table["point_in_time_recovery"][0]["enabled"] is True
    assert table["server_side_encryption"][0]["enabled"] is True
    assert table["server_side_encryption"][0]["kms_key_arn"] == "${var.kms_key_arn}"
    assert table["deletion_protection_enabled"] is True


def _granted() -> set[str]:
    """Actions of the service role as production wires it (SES only if it passes an identity)."""
    document = blocks("iam", "data", "aws_iam_policy_document")["service"]
    main = unquote(parse(TERRAFORM / "envs" / "production" / "main.tf"))
    (iam,) = [m["iam"] for m in main["module"] if "iam" in m]
    with_ses = iam.get("ses_identity_arn") not in (None, "null", "${null}")
    found: set[str] = set()
    for statement in statements(document, dynamic=with_ses):
        assert statement["effect"] == "Allow"
        assert "*" not in statement["resources"]
        found.update(statement["actions"])
    return found


def test_service_role_allows_exactly_the_calls_engine_makes() -> None:
    """Every AWS call in engine/ is allowed to the service role, and nothing else is."""
    needed = required_actions(service_calls())
    assert {"dynamodb:Query", "s3:PutObject", "kms:Decrypt"} <= needed.keys()
    granted = _granted()
    missing = needed.keys() - granted - NOT_GRANTED.keys()
    assert not missing, (
        f"engine/ calls these, the role lacks them: {sorted(missing)}; grant them in "
        "infra/terraform/modules/iam (for ses:SendEmail, pass ses_identity_arn and "
        "ses_configuration_set_arn from module.ses in infra/terraform/envs/production/main.tf)"
    )
    extra = granted - needed.keys()
    assert not extra, f"the role allows what engine/ never calls: {sorted(extra)}"
    assert not granted & NOT_GRANTED.keys()
    assert all("*" not in action for action in granted), "no wildcard actions"


def test_call_scan_sees_a_new_call(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan is real: a module that opens an SES v2 client and sends is found."""
    import tests.infra._aws_calls as scan

    (tmp_path / "mail.py").write_text(
        "async def send(session):\n"
        "    async with session.client('sesv2') as ses:\n"
        "        await ses.send_email(Content={})\n"
    )
    monkeypatch.setattr(scan, "ENGINE", tmp_path)
    assert required_actions(scan.service_calls()) == {"ses:SendEmail": {"sesv2.SendEmail"}}


def test_irsa_trust_is_the_service_account_only() -> None:
    """The role trusts web identities of the healthmed ServiceAccount of its namespace only."""
    trust = blocks("iam", "data", "aws_iam_policy_document")["trust"]
    (statement,) = statements(trust)
    assert statement["actions"] == ["sts:AssumeRoleWithWebIdentity"]
    subjects = [c for c in statement["condition"] if c["variable"].endswith(":sub")]
    assert subjects[0]["values"] == [
        "system:serviceaccount:${var.namespace}:${var.service_account}"
    ]


def test_production_outputs_are_the_overlays_settings() -> None:
    """Terraform's healthmed_settings have exactly the keys of the overlay's settings.env."""
    env_dir = TERRAFORM / "envs" / "production"
    tree = unquote(parse(env_dir / "outputs.tf"))
    settings = next(e["healthmed_settings"] for e in tree["locals"] if "healthmed_settings" in e)
    overlay = K8S / "overlays" / "production"
    keys = {
        line.split("=", 1)[0]
        for line in (overlay / "settings.env").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert set(settings) == keys
    deploy = {line.split("=", 1)[0] for line in (overlay / "deploy.env").read_text().split()}
    _, outputs = variables_and_outputs(env_dir)
    assert deploy == {"SERVICE_ROLE_ARN"}
    assert "SERVICE_ROLE_ARN=" in outputs["deploy_env"]["value"]


def test_s3_bucket_is_private_encrypted_and_tls_only() -> None:
    """SSE-KMS, versioning, every public-access block, TLS-only policy, multipart abort."""
    sse = blocks("s3", "resource", "aws_s3_bucket_server_side_encryption_configuration")
    rule = sse["records"]["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert rule["sse_algorithm"] == "aws:kms"
    versioning = blocks("s3", "resource", "aws_s3_bucket_versioning")["records"]
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"
    block = blocks("s3", "resource", "aws_s3_bucket_public_access_block")["records"]
    assert all(
        block[k] is True
        for k in (
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        )
    )
    policy = blocks("s3", "data", "aws_iam_policy_document")["records"]
    (deny,) = [s for s in statements(policy) if s["effect"] == "Deny"]
    assert deny["condition"][0]["variable"] == "aws:SecureTransport"
    lifecycle = blocks("s3", "resource", "aws_s3_bucket_lifecycle_configuration")["records"]
    assert any("abort_incomplete_multipart_upload" in r for r in lifecycle["rule"])


def test_redis_is_a_failover_cluster_with_tls_and_auth() -> None:
    """Cluster mode with replicas, automatic failover, Multi-AZ, TLS, AUTH, encryption at rest."""
    (group,) = blocks("redis", "resource", "aws_elasticache_replication_group").values()
    for flag in (
        "automatic_failover_enabled",
        "multi_az_enabled",
        "transit_encryption_enabled",
        "at_rest_encryption_enabled",
    ):
        assert group[flag] is True, flag
    assert group["num_node_groups"] == "${var.shards}"
    assert group["auth_token"] == "${random_password.auth.result}"
    assert group["parameter_group_name"] == "${var.parameter_group_name}"
    variables, _ = variables_and_outputs(TERRAFORM / "modules" / "redis")
    assert variables["parameter_group_name"]["default"].endswith(".cluster.on")


def test_kms_key_rotates_and_only_the_service_role_uses_it() -> None:
    """Rotation is on; every statement that allows decrypting names the service role alone."""
    (key,) = blocks("kms", "resource", "aws_kms_key").values()
    assert key["enable_key_rotation"] is True
    policy = blocks("kms", "data", "aws_iam_policy_document")["key"]
    for statement in statements(policy):
        actions = statement["actions"]
        principals = [i for p in statement["principals"] for i in p["identifiers"]]
        if "kms:Decrypt" in actions and not statement.get("condition"):
            assert principals == ["${var.service_role_arn}"], statement["sid"]
        assert "*" not in principals
