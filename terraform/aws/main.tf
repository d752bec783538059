# The primary bucket, its replication to each region's replica, and the sync worker that fills
# it (sync.tf). Each region's gateway is a `modules/region` instance with that region's
# provider: Terraform cannot loop over providers, so the caller lists the regions.

data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  prefix     = trim(var.storage_prefix, "/")
  key_prefix = local.prefix == "" ? "" : "${local.prefix}/"
  store_url  = "s3://${module.bucket.bucket_id}${local.prefix == "" ? "" : "/${local.prefix}"}?region=${data.aws_region.current.region}"
  replicate  = length(var.replicas) > 0
}

module "bucket" {
  source = "./modules/bucket"

  name                                   = var.bucket_name
  force_destroy                          = var.force_destroy
  noncurrent_version_expiration_days     = var.noncurrent_version_expiration_days
  abort_incomplete_multipart_upload_days = var.abort_incomplete_multipart_upload_days
  tags                                   = var.tags
}

################################################################################
# Cross-region replication of the image content (not of sync leases, state or the miss
# queue, which only the primary's readers use).
################################################################################

data "aws_iam_policy_document" "replication_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "replication" {
  count = local.replicate ? 1 : 0

  name               = "${var.name}-replication"
  assume_role_policy = data.aws_iam_policy_document.replication_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "replication" {
  count = local.replicate ? 1 : 0

  statement {
    sid       = "ReadSourceConfiguration"
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [module.bucket.bucket_arn]
  }

  statement {
    sid = "ReadSourceVersions"
    actions = [
      "s3:GetObjectVersionForReplication",
      "s3:GetObjectVersionAcl",
      "s3:GetObjectVersionTagging",
    ]
    resources = ["${module.bucket.bucket_arn}/${local.key_prefix}docker/registry/v2/*"]
  }

  statement {
    sid       = "WriteReplicas"
    actions   = ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]
    resources = [for replica in values(var.replicas) : "${replica.bucket_arn}/${local.key_prefix}docker/registry/v2/*"]
  }
}

resource "aws_iam_role_policy" "replication" {
  count = local.replicate ? 1 : 0

  name   = "replicate-images"
  role   = aws_iam_role.replication[0].id
  policy = data.aws_iam_policy_document.replication[0].json
}

resource "aws_s3_bucket_replication_configuration" "this" {
  count = local.replicate ? 1 : 0

  bucket = module.bucket.bucket_id
  role   = aws_iam_role.replication[0].arn

  dynamic "rule" {
    # Rules with several destinations need distinct priorities; sorted, so a new region does
    # not renumber the others.
    for_each = { for index, region in sort(keys(var.replicas)) : region => index }

    content {
      id       = "images-to-${rule.key}"
      priority = rule.value
      status   = "Enabled"

      filter {
        prefix = "${local.key_prefix}docker/registry/v2/"
      }

      delete_marker_replication {
        status = "Enabled"
      }

      destination {
        bucket        = var.replicas[rule.key].bucket_arn
        storage_class = "STANDARD"

        dynamic "replication_time" {
          for_each = var.replication_time_control ? [1] : []

          content {
            status = "Enabled"

            time {
              minutes = 15
            }
          }
        }

        dynamic "metrics" {
          for_each = var.replication_time_control ? [1] : []

          content {
            status = "Enabled"

            event_threshold {
              minutes = 15
            }
          }
        }
      }
    }
  }
}
