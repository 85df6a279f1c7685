variable "region" {
  description = "AWS region of every resource (AWS_REGION of the pods)."
  type        = string
  default     = "sa-east-1"
}

variable "environment" {
  description = "Environment name, part of every resource name."
  type        = string
  default     = "production"
}

variable "namespace" {
  description = "Kubernetes namespace of k8s/overlays/production."
  type        = string
  default     = "healthmed"
}

variable "admin_role_arns" {
  description = "IAM roles that run this Terraform and administer the KMS key."
  type        = list(string)
}

variable "eks_cluster_arn" {
  description = "ARN of the EKS cluster the service runs on."
  type        = string
}

variable "eks_oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (IRSA)."
  type        = string
}

variable "eks_oidc_provider" {
  description = "The cluster's OIDC issuer without https:// (oidc.eks.<region>.amazonaws.com/id/<id>)."
  type        = string
}

variable "vpc_id" {
  description = "The cluster's VPC."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's CIDR: HEALTHMED_TRUSTED_PROXIES (the load balancer's addresses are in it)."
  type        = string
  default     = "10.0.0.0/16"
}

variable "private_subnet_ids" {
  description = "Private subnets of the VPC in at least two zones (Redis)."
  type        = list(string)
}

variable "redis_client_security_group_ids" {
  description = "Security groups of the pods (or nodes) that reach Redis."
  type        = list(string)
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.r7g.large"
}

variable "redis_shards" {
  description = "Redis Cluster shards."
  type        = number
  default     = 3
}

variable "redis_replicas_per_shard" {
  description = "Replicas per shard."
  type        = number
  default     = 1
}

variable "mail_domain" {
  description = "Domain notifications are sent from (SES identity)."
  type        = string
}

variable "github_repository" {
  description = "owner/name of the repository whose workflow deploys."
  type        = string
}

variable "github_oidc_provider_arn" {
  description = "Existing GitHub Actions OIDC provider of the account, or null to create it."
  type        = string
  default     = null
}
