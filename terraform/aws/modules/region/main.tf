# One region's regfront: a replica bucket (optional), the gateway reading it first and the
# primary last - as an ECS Fargate service or a Lambda function - behind an internal
# Application Load Balancer that the region's nodes reach. Instantiate it once per region with
# that region's provider.

data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  region       = data.aws_region.current.region
  prefix       = trim(var.storage_prefix, "/")
  key_prefix   = local.prefix == "" ? "" : "${local.prefix}/"
  path         = local.prefix == "" ? "" : "/${local.prefix}"
  replica_name = coalesce(var.replica_bucket_name, "${var.primary_bucket_name}-${local.region}")
  fargate      = var.gateway_type == "fargate"
  https        = var.certificate_arn != null

  # Nearest first: the replica, then the primary (which sync writes and misses go to).
  store_urls = concat(
    var.create_replica_bucket ? ["s3://${local.replica_name}${local.path}?region=${local.region}"] : [],
    ["s3://${var.primary_bucket_name}${local.path}?region=${var.primary_bucket_region}"],
  )
  config      = merge(var.config, { storage = [for url in local.store_urls : { url = url }] })
  config_yaml = yamlencode(local.config)

  config_pull_through = anytrue([
    for upstream in values(try(var.config.upstreams, {})) : try(upstream.on_miss, "fallthrough") == "pull-through"
  ])
  read_bucket_arns = concat(module.replica_bucket[*].bucket_arn, [var.primary_bucket_arn])

  environment = merge(var.environment, {
    REGFRONT_CONFIG      = "/tmp/regfront.yaml"
    REGFRONT_CONFIG_YAML = local.config_yaml
    REGFRONT_WORKERS     = tostring(var.workers)
  })

  # The image's ENTRYPOINT is `regfront`; ECS mounts no files, so the rendered config travels
  # in REGFRONT_CONFIG_YAML and this wrapper writes it where REGFRONT_CONFIG points, then
  # exec's regfront (PID 1, so SIGTERM reaches it and uvicorn drains).
  entry_point = [
    "/bin/sh", "-c",
    "printf '%s\\n' \"$REGFRONT_CONFIG_YAML\" >/tmp/regfront.yaml && exec regfront \"$@\"",
    "regfront",
  ]
}

module "replica_bucket" {
  source = "../bucket"
  count  = var.create_replica_bucket ? 1 : 0

  name                                   = local.replica_name
  force_destroy                          = var.force_destroy
  noncurrent_version_expiration_days     = var.noncurrent_version_expiration_days
  abort_incomplete_multipart_upload_days = var.abort_incomplete_multipart_upload_days
  tags                                   = var.tags
}

################################################################################
# The gateway's permissions: read every store, write only the miss queue in the primary - or
# the whole primary with pull-through.
################################################################################

data "aws_iam_policy_document" "gateway_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = [local.fargate ? "ecs-tasks.amazonaws.com" : "lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "gateway" {
  name               = "${var.name}-gateway-${local.region}"
  assume_role_policy = data.aws_iam_policy_document.gateway_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "gateway" {
  statement {
    # Pre-signed blob URLs are signed with this role: they grant what it grants.
    sid       = "ReadStores"
    actions   = ["s3:GetObject"]
    resources = [for arn in local.read_bucket_arns : "${arn}/${local.key_prefix}*"]
  }

  statement {
    # Unconditional: without ListBucket, S3 answers a missing key with 403 instead of 404.
    sid       = "ListStores"
    actions   = ["s3:ListBucket"]
    resources = local.read_bucket_arns
  }

  statement {
    sid       = "QueueMisses"
    actions   = ["s3:PutObject"]
    resources = ["${var.primary_bucket_arn}/${local.key_prefix}regfront/v1/misses/*"]
  }

  dynamic "statement" {
    for_each = var.pull_through ? [1] : []

    content {
      sid       = "PullThrough"
      actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
      resources = ["${var.primary_bucket_arn}/${local.key_prefix}*"]
    }
  }
}

resource "aws_iam_role_policy" "gateway" {
  name   = "stores"
  role   = aws_iam_role.gateway.id
  policy = data.aws_iam_policy_document.gateway.json

  lifecycle {
    precondition {
      condition     = var.pull_through || !local.config_pull_through
      error_message = "An upstream uses on_miss: pull-through, which writes to the primary store: set pull_through = true."
    }
  }
}

resource "aws_cloudwatch_log_group" "this" {
  name              = local.fargate ? "/regfront/${var.name}/gateway" : "/aws/lambda/${var.name}-gateway"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

################################################################################
# The internal load balancer nodes reach: HTTP on 80, or HTTPS on 443 with a certificate. With
# no healthy gateway it answers 503 at once, so containerd moves on to the registry.
################################################################################

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "regfront load balancer: the nodes in"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "alb" {
  for_each = toset(var.allowed_cidr_blocks)

  security_group_id = aws_security_group.alb.id
  description       = "containerd on the nodes"
  ip_protocol       = "tcp"
  from_port         = local.https ? 443 : 80
  to_port           = local.https ? 443 : 80
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_gateway" {
  count = local.fargate ? 1 : 0

  security_group_id            = aws_security_group.alb.id
  description                  = "to the gateway tasks"
  ip_protocol                  = "tcp"
  from_port                    = 5000
  to_port                      = 5000
  referenced_security_group_id = aws_security_group.gateway.id
}

resource "aws_security_group" "gateway" {
  name        = "${var.name}-gateway"
  description = "regfront gateway: the load balancer in, HTTPS out"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "gateway_from_alb" {
  count = local.fargate ? 1 : 0

  security_group_id            = aws_security_group.gateway.id
  description                  = "from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = 5000
  to_port                      = 5000
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "gateway_https" {
  security_group_id = aws_security_group.gateway.id
  description       = "HTTPS to S3, ECR and (pull-through, tag checks) the upstream registries"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_lb" "this" {
  name                       = substr("${var.name}-${local.region}", 0, 32)
  internal                   = var.internal
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  tags                       = var.tags
}

resource "aws_lb_target_group" "this" {
  name        = substr("${var.name}-${local.region}", 0, 32)
  target_type = local.fargate ? "ip" : "lambda"
  port        = local.fargate ? 5000 : null
  protocol    = local.fargate ? "HTTP" : null
  vpc_id      = local.fargate ? var.vpc_id : null
  # Registry requests are short (a manifest, a 307): drain quickly.
  deregistration_delay = local.fargate ? 15 : null
  tags                 = var.tags

  health_check {
    # Each check of a Lambda target is an invocation: checked only on Fargate.
    enabled             = local.fargate
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "this" {
  load_balancer_arn = aws_lb.this.arn
  port              = local.https ? 443 : 80
  protocol          = local.https ? "HTTPS" : "HTTP"
  certificate_arn   = var.certificate_arn
  ssl_policy        = local.https ? var.ssl_policy : null
  tags              = var.tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}
