# The project's customer-managed KMS key: it encrypts the DynamoDB table, the record bucket,
# the Redis cluster at rest and its AUTH secret, and wraps each health record's data key
# (engine/records/_keys.py calls GenerateDataKey and Decrypt with it, through HEALTHMED_KMS_KEY_ID).
#
# Key policy: administrators (the Terraform deployers) manage the key but cannot use it to
# decrypt; the service role alone may use it, directly (record data keys) and through DynamoDB
# and S3 (kms:ViaService); AWS services may create grants only for their own resources.

data "aws_region" "current" {}

locals {
  region = data.aws_region.current.name
}

# In a key policy, "Resource": "*" means "this key" (a key policy can name no other resource),
# which is why checkov's generic IAM checks on "*" resources are skipped on this document only.
data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:key policy: Resource "*" is this key only; administration is limited to var.admin_role_arns
  #checkov:skip=CKV_AWS_111:key policy: Resource "*" is this key only; writes are limited to named principals
  #checkov:skip=CKV_AWS_356:key policy: Resource "*" is the only resource a key policy can name (this key)
  statement {
    sid    = "Administration"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = var.admin_role_arns
    }
    actions = [
      "kms:CancelKeyDeletion",
      "kms:Create*",
      "kms:Delete*",
      "kms:Describe*",
      "kms:Disable*",
      "kms:Enable*",
      "kms:Get*",
      "kms:List*",
      "kms:Put*",
      "kms:Revoke*",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:Update*",
    ]
    resources = ["*"]
  }

  statement {
    sid    = "ServiceRoleRecordKeys"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = [var.service_role_arn]
    }
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
  }

  statement {
    sid    = "ServiceRoleThroughDynamoDBAndS3"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = [var.service_role_arn]
    }
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey", "kms:CreateGrant"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["dynamodb.${local.region}.amazonaws.com", "s3.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid    = "AwsServicesGrantsForTheirResources"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = var.admin_role_arns
    }
    actions   = ["kms:CreateGrant", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: DynamoDB, S3, ElastiCache, Secrets Manager and record data keys"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}
