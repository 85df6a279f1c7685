variable "name" {
  description = "Bucket of record blobs (globally unique); its log bucket is <name>-logs."
  type        = string
}

variable "prefix" {
  description = "Key prefix of the blobs: HEALTHMED_BLOB_URL is s3://<name>/<prefix>."
  type        = string
  default     = "records"
}

variable "kms_key_arn" {
  description = "The project's KMS key (SSE-KMS, bucket key enabled)."
  type        = string
}

variable "noncurrent_days" {
  description = "Days a replaced or deleted blob version is kept before it expires."
  type        = number
  default     = 30
}

variable "log_days" {
  description = "Days access logs are kept."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
