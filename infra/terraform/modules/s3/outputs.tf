output "bucket_name" {
  description = "The record bucket."
  value       = aws_s3_bucket.records.id
}

output "bucket_arn" {
  description = "The record bucket's ARN."
  value       = aws_s3_bucket.records.arn
}

output "prefix" {
  description = "The key prefix the service writes under."
  value       = var.prefix
}

output "blob_url" {
  description = "The value of HEALTHMED_BLOB_URL."
  value       = "s3://${aws_s3_bucket.records.id}/${var.prefix}"
}
