variable "name" {
  description = "Name of the configuration set."
  type        = string
}

variable "domain" {
  description = "The sending domain (From: addresses are <anything>@<domain>)."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
