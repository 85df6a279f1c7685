output "role_arn" {
  description = "The role the ServiceAccount's eks.amazonaws.com/role-arn annotation names."
  value       = aws_iam_role.service.arn
}

output "role_name" {
  description = "The role's name."
  value       = aws_iam_role.service.name
}
