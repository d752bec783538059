################################################################################
# gateway_type = "lambda": the same image as a container-image function behind the same load
# balancer, for regions with little traffic. Blobs are 307s to pre-signed URLs, so responses
# stay small; pull-through (which streams blobs) is refused here.
################################################################################

resource "aws_iam_role_policy_attachment" "lambda_vpc" {
  count = local.fargate ? 0 : 1

  role       = aws_iam_role.gateway.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_lambda_function" "this" {
  count = local.fargate ? 0 : 1

  function_name                  = "${var.name}-gateway"
  role                           = aws_iam_role.gateway.arn
  package_type                   = "Image"
  image_uri                      = var.image
  architectures                  = [var.cpu_architecture == "ARM64" ? "arm64" : "x86_64"]
  memory_size                    = var.lambda_memory_size
  timeout                        = var.lambda_timeout
  reserved_concurrent_executions = var.lambda_reserved_concurrency
  tags                           = var.tags

  image_config {
    entry_point = ["python", "-m", "awslambdaric"]
    command     = ["gateway.lambda_handler.handler"]
  }

  environment {
    # gateway/lambda_handler.py reads the YAML from the variable itself: no wrapper here.
    variables = merge(var.environment, { REGFRONT_CONFIG_YAML = local.config_yaml })
  }

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = [aws_security_group.gateway.id]
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.this.name
  }

  lifecycle {
    precondition {
      condition     = !local.config_pull_through && !var.pull_through
      error_message = "pull-through streams blobs through the gateway; Lambda buffers whole responses. Use on_miss: fallthrough, or gateway_type = \"fargate\"."
    }

    precondition {
      condition     = length(var.secrets) == 0
      error_message = "secrets are injected by ECS only; a Lambda gateway gets none."
    }

    precondition {
      # Lambda's limit is 4 KB for all variables together.
      condition     = length(jsonencode(merge(var.environment, { REGFRONT_CONFIG_YAML = local.config_yaml }))) < 4096
      error_message = "The rendered config is too large for Lambda's 4 KB of environment: trim the mirror rules the gateway sees, or use fargate."
    }
  }

  depends_on = [aws_iam_role_policy_attachment.lambda_vpc, aws_iam_role_policy.gateway]
}

resource "aws_lambda_permission" "this" {
  count = local.fargate ? 0 : 1

  statement_id  = "AllowLoadBalancer"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this[0].function_name
  principal     = "elasticloadbalancing.amazonaws.com"
  source_arn    = aws_lb_target_group.this.arn
}

resource "aws_lb_target_group_attachment" "this" {
  count = local.fargate ? 0 : 1

  target_group_arn = aws_lb_target_group.this.arn
  target_id        = aws_lambda_function.this[0].arn

  depends_on = [aws_lambda_permission.this]
}
