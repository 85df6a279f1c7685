variable "name" {
  description = "Table name: HEALTHMED_STORE_URL is dynamodb://<name>."
  type        = string
}

variable "kms_key_arn" {
  description = "The project's KMS key (server-side encryption)."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
