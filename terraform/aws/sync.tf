################################################################################
# The sync worker: `regfront sync --once` as a Fargate task that EventBridge Scheduler starts.
# It reads and writes the primary bucket only; the replicas get its writes by replication.
################################################################################

locals {
  sync_config = merge(var.config, { storage = [{ url = local.store_url }] })

  # The image's ENTRYPOINT is `regfront`; ECS mounts no files, so the rendered config travels
  # in REGFRONT_CONFIG_YAML and this wrapper writes it where REGFRONT_CONFIG points, then
  # exec's regfront (PID 1, so SIGTERM reaches it).
  entry_point = [
    "/bin/sh", "-c",
    "printf '%s\\n' \"$REGFRONT_CONFIG_YAML\" >/tmp/regfront.yaml && exec regfront \"$@\"",
    "regfront",
  ]

  sync_security_group_ids = length(var.sync_security_group_ids) > 0 ? var.sync_security_group_ids : aws_security_group.this[*].id
}

resource "aws_ecs_cluster" "this" {
  count = var.sync_enabled ? 1 : 0

  name = "${var.name}-sync"
  tags = var.tags

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "this" {
  count = var.sync_enabled ? 1 : 0

  name              = "/regfront/${var.name}/sync"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# What the task does: read and write the primary store.
resource "aws_iam_role" "sync_task" {
  count = var.sync_enabled ? 1 : 0

  name               = "${var.name}-sync-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "sync_task" {
  statement {
    sid = "ReadWritePrimaryStore"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${module.bucket.bucket_arn}/${local.key_prefix}*"]
  }

  statement {
    # Unconditional: without ListBucket, S3 answers a missing key with 403 instead of 404.
    sid       = "ListPrimaryStore"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [module.bucket.bucket_arn]
  }
}

resource "aws_iam_role_policy" "sync_task" {
  count = var.sync_enabled ? 1 : 0

  name   = "primary-store"
  role   = aws_iam_role.sync_task[0].id
  policy = data.aws_iam_policy_document.sync_task.json
}

# What ECS does to start it: pull the image, write logs, read the secrets.
resource "aws_iam_role" "sync_execution" {
  count = var.sync_enabled ? 1 : 0

  name               = "${var.name}-sync-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "this" {
  count = var.sync_enabled ? 1 : 0

  role       = aws_iam_role.sync_execution[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "sync_secrets" {
  count = length(var.sync_secrets) > 0 ? 1 : 0

  # A Secrets Manager valueFrom may end in :json-key:stage:version; the policy names the secret.
  statement {
    sid       = "ReadSyncSecrets"
    actions   = ["secretsmanager:GetSecretValue", "ssm:GetParameters"]
    resources = [for arn in values(var.sync_secrets) : split(":", arn)[2] == "secretsmanager" ? "${join(":", slice(split(":", arn), 0, 7))}*" : arn]
  }
}

resource "aws_iam_role_policy" "sync_secrets" {
  count = var.sync_enabled && length(var.sync_secrets) > 0 ? 1 : 0

  name   = "sync-secrets"
  role   = aws_iam_role.sync_execution[0].id
  policy = data.aws_iam_policy_document.sync_secrets[0].json
}

resource "aws_security_group" "this" {
  count = var.sync_enabled && length(var.sync_security_group_ids) == 0 ? 1 : 0

  name        = "${var.name}-sync"
  description = "regfront sync worker: HTTPS out to the upstream registries and S3"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "this" {
  count = var.sync_enabled && length(var.sync_security_group_ids) == 0 ? 1 : 0

  security_group_id = aws_security_group.this[0].id
  description       = "HTTPS to upstream registries, their CDNs and S3"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_ecs_task_definition" "this" {
  count = var.sync_enabled ? 1 : 0

  family                   = "${var.name}-sync"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.sync_cpu
  memory                   = var.sync_memory
  execution_role_arn       = aws_iam_role.sync_execution[0].arn
  task_role_arn            = aws_iam_role.sync_task[0].arn
  tags                     = var.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.sync_cpu_architecture
  }

  container_definitions = jsonencode([{
    name       = "sync"
    image      = var.sync_image
    essential  = true
    entryPoint = local.entry_point
    command    = ["sync", "--once", "--json"]
    environment = [for name, value in merge(var.sync_environment, {
      REGFRONT_CONFIG      = "/tmp/regfront.yaml"
      REGFRONT_CONFIG_YAML = yamlencode(local.sync_config)
    }) : { name = name, value = value }]
    secrets = [for name, arn in var.sync_secrets : { name = name, valueFrom = arn }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this[0].name
        awslogs-region        = data.aws_region.current.region
        awslogs-stream-prefix = "sync"
      }
    }
  }])

  lifecycle {
    precondition {
      condition     = var.sync_image != null && length(var.sync_subnet_ids) > 0
      error_message = "The sync worker needs sync_image and sync_subnet_ids (or set sync_enabled = false)."
    }

    precondition {
      condition     = length(var.sync_security_group_ids) > 0 || var.vpc_id != null
      error_message = "Set vpc_id (for the sync task's security group) or sync_security_group_ids."
    }
  }
}

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  count = var.sync_enabled ? 1 : 0

  name               = "${var.name}-sync-scheduler"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  count = var.sync_enabled ? 1 : 0

  statement {
    sid       = "RunSyncTask"
    actions   = ["ecs:RunTask"]
    resources = ["${aws_ecs_task_definition.this[0].arn_without_revision}:*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this[0].arn]
    }
  }

  statement {
    sid       = "PassSyncRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.sync_task[0].arn, aws_iam_role.sync_execution[0].arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "scheduler" {
  count = var.sync_enabled ? 1 : 0

  name   = "run-sync-task"
  role   = aws_iam_role.scheduler[0].id
  policy = data.aws_iam_policy_document.scheduler[0].json
}

resource "aws_scheduler_schedule" "this" {
  count = var.sync_enabled ? 1 : 0

  name                = "${var.name}-sync"
  schedule_expression = var.sync_schedule_expression

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_ecs_cluster.this[0].arn
    role_arn = aws_iam_role.scheduler[0].arn

    ecs_parameters {
      task_definition_arn = aws_ecs_task_definition.this[0].arn
      launch_type         = "FARGATE"
      task_count          = 1

      network_configuration {
        subnets          = var.sync_subnet_ids
        security_groups  = local.sync_security_group_ids
        assign_public_ip = var.sync_assign_public_ip
      }
    }

    # The next scheduled run is the retry; a failed rule is reported in the task's logs.
    retry_policy {
      maximum_retry_attempts = 0
    }
  }
}
