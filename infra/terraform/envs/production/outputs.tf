# The settings k8s/overlays/production consumes:
#   terraform output -raw healthmed_settings_env > k8s/overlays/production/settings.env
#   terraform output -raw deploy_env > k8s/overlays/production/deploy.env
# HEALTHMED_REDIS_URL holds the AUTH token, so it is not an output: it goes into the
# healthmed-secrets Secret (README "Deploying to AWS").

locals {
  healthmed_settings = {
    HEALTHMED_ENV             = "production"
    HEALTHMED_LOG_FORMAT      = "json"
    HEALTHMED_REDIS_CLUSTER   = "true"
    HEALTHMED_STORE_URL       = module.dynamodb.store_url
    HEALTHMED_BLOB_URL        = module.s3.blob_url
    HEALTHMED_KMS_KEY_ID      = module.kms.alias_name
    HEALTHMED_TRUSTED_PROXIES = var.vpc_cidr
    AWS_REGION                = var.region
  }
}

output "healthmed_settings" {
  description = "The HEALTHMED_* (and AWS_REGION) settings of the production pods."
  value       = local.healthmed_settings
}

output "healthmed_settings_env" {
  description = "The same settings as an env file: k8s/overlays/production/settings.env."
  value       = join("", [for k in sort(keys(local.healthmed_settings)) : "${k}=${local.healthmed_settings[k]}\n"])
}

output "deploy_env" {
  description = "Values the overlay substitutes: k8s/overlays/production/deploy.env."
  value       = "SERVICE_ROLE_ARN=${module.iam.role_arn}\n"
}

output "redis_configuration_endpoint" {
  description = "Seed node of HEALTHMED_REDIS_URL: rediss://:<token>@<this>:6379."
  value       = module.redis.configuration_endpoint
}

output "redis_auth_secret_arn" {
  description = "Secrets Manager secret with the Redis AUTH token."
  value       = module.redis.auth_secret_arn
}

output "ses_dkim_tokens" {
  description = "DKIM CNAME records to publish for the mail domain."
  value       = module.ses.dkim_tokens
}

output "image_repository" {
  description = "The registry repository the workflow pushes to (vars.IMAGE_REPOSITORY)."
  value       = module.delivery.repository_url
}

output "deploy_role_arn" {
  description = "Role the workflow assumes through OIDC (vars.AWS_DEPLOY_ROLE_ARN)."
  value       = module.delivery.deploy_role_arn
}
