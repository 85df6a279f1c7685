variable "name" {
  description = "Replication group id and name prefix, e.g. healthmed-production."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cluster (the EKS cluster's VPC)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets in at least two zones (Multi-AZ places primaries and replicas apart)."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups of the service's pods or nodes allowed to reach 6379."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "The project's KMS key (encryption at rest, the AUTH secret)."
  type        = string
}

variable "engine_version" {
  description = "Redis engine version."
  type        = string
  default     = "7.1"
}

variable "parameter_group_name" {
  description = "A cluster-mode parameter group (cluster-enabled yes)."
  type        = string
  default     = "default.redis7.cluster.on"
}

variable "node_type" {
  description = "Node type; see loadtest/CAPACITY.md for the size 20,000 users need."
  type        = string
  default     = "cache.r7g.large"
}

variable "shards" {
  description = "Number of shards (node groups)."
  type        = number
  default     = 3
}

variable "replicas_per_shard" {
  description = "Replicas per shard (at least 1 for automatic failover)."
  type        = number
  default     = 1
  validation {
    condition     = var.replicas_per_shard >= 1
    error_message = "Automatic failover needs at least one replica per shard."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
