output "table_name" {
  description = "The table's name."
  value       = aws_dynamodb_table.this.name
}

output "table_arn" {
  description = "The table's ARN (its index is <arn>/index/gsi1)."
  value       = aws_dynamodb_table.this.arn
}

output "store_url" {
  description = "The value of HEALTHMED_STORE_URL."
  value       = "dynamodb://${aws_dynamodb_table.this.name}"
}
