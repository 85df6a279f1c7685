# Redis for the hot state, in cluster mode (HEALTHMED_REDIS_CLUSTER=true): var.shards shards of
# one primary and var.replicas_per_shard replicas each, spread over the subnets' zones, with
# automatic failover and Multi-AZ; TLS in transit, AUTH token, encryption at rest with the
# project's key. Every key of a doctor carries the hash tag {d:<id>}, so each Lua script touches
# one slot. Redis keeps no durable state: whatever a failover loses is rebuilt from DynamoDB.
#
# The AUTH token is generated here and kept in Secrets Manager; HEALTHMED_REDIS_URL
# (rediss://:<token>@<configuration endpoint>:6379) goes into the healthmed-secrets Secret.

resource "random_password" "auth" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "auth" {
  #checkov:skip=CKV2_AWS_57:ElastiCache AUTH tokens rotate through modify-replication-group (ROTATE then SET) together with the pods' secret, a runbook step, not a Lambda rotation
  name                    = "${var.name}/redis-auth-token"
  description             = "AUTH token of the ${var.name} Redis cluster"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "auth" {
  secret_id     = aws_secretsmanager_secret.auth.id
  secret_string = random_password.auth.result
}

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_security_group" "this" {
  name        = "${var.name}-redis"
  description = "Redis cluster ${var.name}: TLS 6379 from the service's pods only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "from_clients" {
  for_each                     = toset(var.client_security_group_ids)
  security_group_id            = aws_security_group.this.id
  description                  = "Redis (TLS) from the service's pods"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = each.value
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = var.name
  description                = "healthmed hot state (${var.name})"
  engine                     = "redis"
  engine_version             = var.engine_version
  node_type                  = var.node_type
  port                       = 6379
  parameter_group_name       = var.parameter_group_name
  num_node_groups            = var.shards
  replicas_per_node_group    = var.replicas_per_shard
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.this.id]
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = random_password.auth.result
  auth_token_update_strategy = "ROTATE"
  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn
  snapshot_retention_limit   = 1
  snapshot_window            = "05:00-06:00"
  maintenance_window         = "sun:06:30-sun:07:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false
  tags                       = var.tags
}
