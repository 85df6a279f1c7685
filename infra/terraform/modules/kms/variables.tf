variable "name" {
  description = "Name of the key's alias (alias/<name>), e.g. healthmed-production."
  type        = string
}

variable "admin_role_arns" {
  description = "IAM roles that administer the key (the Terraform deployers); they cannot decrypt with it."
  type        = list(string)
}

variable "service_role_arn" {
  description = "The service's IRSA role: the only principal allowed to use the key."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
