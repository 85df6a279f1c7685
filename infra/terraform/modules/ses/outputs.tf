output "identity_arn" {
  description = "ARN of the domain identity (the resource of ses:SendEmail)."
  value       = aws_sesv2_email_identity.this.arn
}

output "configuration_set_name" {
  description = "The configuration set every message names."
  value       = aws_sesv2_configuration_set.this.configuration_set_name
}

output "configuration_set_arn" {
  description = "ARN of the configuration set (also a resource of ses:SendEmail)."
  value       = aws_sesv2_configuration_set.this.arn
}

output "dkim_tokens" {
  description = "Publish <token>._domainkey.<domain> CNAME <token>.dkim.amazonses.com for each."
  value       = aws_sesv2_email_identity.this.dkim_signing_attributes[0].tokens
}
