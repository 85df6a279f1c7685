variable "name" {
  description = "Name of the service role."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider."
  type        = string
}

variable "oidc_provider" {
  description = "The provider's URL without https:// (oidc.eks.<region>.amazonaws.com/id/<id>)."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of the ServiceAccount (k8s/overlays/production: healthmed)."
  type        = string
  default     = "healthmed"
}

variable "service_account" {
  description = "Name of the ServiceAccount (k8s/base/serviceaccount.yaml: healthmed)."
  type        = string
  default     = "healthmed"
}

variable "table_arn" {
  description = "The DynamoDB table."
  type        = string
}

variable "bucket_arn" {
  description = "The record bucket."
  type        = string
}

variable "bucket_prefix" {
  description = "Key prefix the service writes under (the path of HEALTHMED_BLOB_URL)."
  type        = string
}

variable "kms_key_arn" {
  description = "The project's KMS key."
  type        = string
}

variable "ses_identity_arn" {
  description = "SES identity the service sends from; null grants no SES action."
  type        = string
  default     = null
}

variable "ses_configuration_set_arn" {
  description = "SES configuration set named by every message."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
