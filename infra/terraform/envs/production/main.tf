# healthmed's production environment: the AWS side of k8s/overlays/production.
# It expects an EKS cluster (with its IAM OIDC provider) and its VPC; it creates the KMS key, the
# DynamoDB table, the record bucket, the Redis cluster, the SES identity, the service's IRSA
# role, the image registry and the GitHub deploy role. Its outputs are the overlay's settings.

data "aws_caller_identity" "current" {}

locals {
  name = "healthmed-${var.environment}"
}

module "iam" {
  source            = "../../modules/iam"
  name              = "${local.name}-service"
  oidc_provider_arn = var.eks_oidc_provider_arn
  oidc_provider     = var.eks_oidc_provider
  namespace         = var.namespace
  service_account   = "healthmed"
  table_arn         = module.dynamodb.table_arn
  bucket_arn        = module.s3.bucket_arn
  bucket_prefix     = module.s3.prefix
  kms_key_arn       = module.kms.key_arn
  # SES v2 SendEmail from the identity, with the configuration set (engine/notifications).
  ses_identity_arn          = module.ses.identity_arn
  ses_configuration_set_arn = module.ses.configuration_set_arn
}

module "kms" {
  source           = "../../modules/kms"
  name             = local.name
  admin_role_arns  = var.admin_role_arns
  service_role_arn = module.iam.role_arn
}

module "dynamodb" {
  source      = "../../modules/dynamodb"
  name        = local.name
  kms_key_arn = module.kms.key_arn
}

module "s3" {
  source      = "../../modules/s3"
  name        = "${local.name}-records-${data.aws_caller_identity.current.account_id}"
  prefix      = "records"
  kms_key_arn = module.kms.key_arn
}

module "redis" {
  source                    = "../../modules/redis"
  name                      = local.name
  vpc_id                    = var.vpc_id
  subnet_ids                = var.private_subnet_ids
  client_security_group_ids = var.redis_client_security_group_ids
  kms_key_arn               = module.kms.key_arn
  node_type                 = var.redis_node_type
  shards                    = var.redis_shards
  replicas_per_shard        = var.redis_replicas_per_shard
}

module "ses" {
  source = "../../modules/ses"
  name   = local.name
  domain = var.mail_domain
}

module "delivery" {
  source                   = "../../modules/delivery"
  name                     = "healthmed"
  github_repository        = var.github_repository
  github_oidc_provider_arn = var.github_oidc_provider_arn
  eks_cluster_arn          = var.eks_cluster_arn
}
