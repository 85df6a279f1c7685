output "repository_url" {
  description = "Where the workflow pushes the image."
  value       = aws_ecr_repository.this.repository_url
}

output "deploy_role_arn" {
  description = "Role for the workflow's aws-actions/configure-aws-credentials (role-to-assume)."
  value       = aws_iam_role.deploy.arn
}
