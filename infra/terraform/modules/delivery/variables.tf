variable "name" {
  description = "Repository name (the image is <registry>/<name>@sha256:...)."
  type        = string
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose production environment deploys."
  type        = string
}

variable "github_oidc_provider_arn" {
  description = "An existing GitHub Actions OIDC provider of the account; null creates one."
  type        = string
  default     = null
}

variable "eks_cluster_arn" {
  description = "The EKS cluster the workflow deploys to (the role is also mapped to a namespace-scoped Kubernetes role there)."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
