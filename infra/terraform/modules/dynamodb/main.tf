# The single table of engine/store (documented in engine/store/_port.py and _dynamodb.py):
# string keys pk (HASH) and sk (RANGE); one sparse global secondary index "gsi1" on
# gsi1pk (HASH) / gsi1sk (RANGE), projection ALL; the item's version "v" and data "d" are plain
# attributes and need no definition. On-demand billing, point-in-time recovery, encryption with
# the project's KMS key, deletion protection.
#
# No TTL yet: DynamoDB's TTL needs a top-level number attribute (epoch seconds), and the store
# writes none. Revocations carry their end in gsi1sk and the engine deletes them itself when it
# restores revocations (engine/accounts); Idempotency-Key records (IDEM#) lapse with their
# expiry inside "d" and are overwritten when the key is used again (engine/booking/_idempotency).
# When the store writes a TTL attribute, name it here: ttl { attribute_name = "<it>" enabled = true }.

resource "aws_dynamodb_table" "this" {
  name                        = var.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = true
  table_class                 = "STANDARD"

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }
  attribute {
    name = "gsi1pk"
    type = "S"
  }
  attribute {
    name = "gsi1sk"
    type = "S"
  }

  global_secondary_index {
    name            = "gsi1"
    hash_key        = "gsi1pk"
    range_key       = "gsi1sk"
    projection_type = "ALL"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  tags = var.tags
}
