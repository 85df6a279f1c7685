# The service's IAM role, assumed by the pods' ServiceAccount through IRSA (web identity from
# the EKS cluster's OIDC provider): no access key exists anywhere. Least privilege: exactly the
# API actions engine/ calls, on exactly the table, index, bucket prefix, key and SES identity of
# this environment. tests/infra/test_terraform.py lists the boto3 calls in engine/ and checks
# that this policy allows each and nothing else:
#   DynamoDB  GetItem, Query (table and gsi1), UpdateItem, DeleteItem, ConditionCheckItem
#             (TransactWriteItems needs the action of each item it writes), DescribeTable
#             (readiness and start-up); CreateTable is not granted: only ?create=true (tests,
#             development) calls it, production's table is this Terraform's
#   S3        PutObject (PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload),
#             GetObject (GetObject, HeadObject), DeleteObject, AbortMultipartUpload
#   KMS       GenerateDataKey, Decrypt (record data keys)
#   SES       SendEmail (through SES v2), from the identity with the configuration set

data "aws_iam_policy_document" "trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${var.service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "service" {
  name                 = var.name
  description          = "healthmed pods (IRSA: ${var.namespace}/${var.service_account})"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600
  tags                 = var.tags
}

data "aws_iam_policy_document" "service" {
  statement {
    sid    = "Store"
    effect = "Allow"
    actions = [
      "dynamodb:ConditionCheckItem",
      "dynamodb:DeleteItem",
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:Query",
      "dynamodb:UpdateItem",
    ]
    resources = [var.table_arn]
  }

  statement {
    sid       = "StoreIndex"
    effect    = "Allow"
    actions   = ["dynamodb:Query"]
    resources = ["${var.table_arn}/index/gsi1"]
  }

  statement {
    sid    = "RecordBlobs"
    effect = "Allow"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:DeleteObject",
      "s3:GetObject",
      "s3:PutObject",
    ]
    resources = ["${var.bucket_arn}/${var.bucket_prefix}/*"]
  }

  statement {
    sid       = "RecordDataKeys"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }

  dynamic "statement" {
    for_each = var.ses_identity_arn == null ? [] : [1]
    content {
      sid       = "Notifications"
      effect    = "Allow"
      actions   = ["ses:SendEmail"]
      resources = [var.ses_identity_arn, var.ses_configuration_set_arn]
    }
  }
}

resource "aws_iam_role_policy" "service" {
  name   = "${var.name}-least-privilege"
  role   = aws_iam_role.service.id
  policy = data.aws_iam_policy_document.service.json
}
