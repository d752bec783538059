################################################################################
# gateway_type = "fargate": an ECS service of `regfront serve` tasks.
################################################################################

resource "aws_ecs_cluster" "this" {
  count = local.fargate ? 1 : 0

  name = var.name
  tags = var.tags

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_iam_role" "execution" {
  count = local.fargate ? 1 : 0

  name               = "${var.name}-gateway-execution-${local.region}"
  assume_role_policy = data.aws_iam_policy_document.gateway_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  count = local.fargate ? 1 : 0

  role       = aws_iam_role.execution[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "secrets" {
  count = length(var.secrets) > 0 ? 1 : 0

  # A Secrets Manager valueFrom may end in :json-key:stage:version; the policy names the secret.
  statement {
    sid       = "ReadGatewaySecrets"
    actions   = ["secretsmanager:GetSecretValue", "ssm:GetParameters"]
    resources = [for arn in values(var.secrets) : split(":", arn)[2] == "secretsmanager" ? "${join(":", slice(split(":", arn), 0, 7))}*" : arn]
  }
}

resource "aws_iam_role_policy" "secrets" {
  count = local.fargate && length(var.secrets) > 0 ? 1 : 0

  name   = "gateway-secrets"
  role   = aws_iam_role.execution[0].id
  policy = data.aws_iam_policy_document.secrets[0].json
}

resource "aws_ecs_task_definition" "this" {
  count = local.fargate ? 1 : 0

  family                   = "${var.name}-gateway"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution[0].arn
  task_role_arn            = aws_iam_role.gateway.arn
  tags                     = var.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([{
    name         = "gateway"
    image        = var.image
    essential    = true
    entryPoint   = local.entry_point
    command      = ["serve"]
    portMappings = [{ containerPort = 5000, protocol = "tcp" }]
    environment  = [for name, value in merge(local.environment, { PORT = "5000" }) : { name = name, value = value }]
    secrets      = [for name, arn in var.secrets : { name = name, valueFrom = arn }]
    # uvicorn drains for up to 30 s after SIGTERM.
    stopTimeout = 35
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "gateway"
      }
    }
  }])
}

resource "aws_ecs_service" "this" {
  count = local.fargate ? 1 : 0

  name                              = "${var.name}-gateway"
  cluster                           = aws_ecs_cluster.this[0].id
  task_definition                   = aws_ecs_task_definition.this[0].arn
  desired_count                     = var.desired_count
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 30
  propagate_tags                    = "SERVICE"
  tags                              = var.tags

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.gateway.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this.arn
    container_name   = "gateway"
    container_port   = 5000
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [aws_lb_listener.this, aws_iam_role_policy.gateway]
}
