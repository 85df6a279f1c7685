output "key_arn" {
  description = "ARN of the key (encryption settings of the table, bucket, cache and secret)."
  value       = aws_kms_key.this.arn
}

output "alias_name" {
  description = "alias/<name>: the value of HEALTHMED_KMS_KEY_ID."
  value       = aws_kms_alias.this.name
}
