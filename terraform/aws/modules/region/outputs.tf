output "gateway_url" {
  description = "The gateway as this region's nodes reach it (the node agent's `gateway`, `regfront containerd-config --gateway`)."
  value       = "${local.https ? "https" : "http"}://${aws_lb.this.dns_name}"
}

output "lb_arn" {
  description = "ARN of the load balancer."
  value       = aws_lb.this.arn
}

output "lb_dns_name" {
  description = "DNS name of the load balancer (point a friendlier private DNS record at it)."
  value       = aws_lb.this.dns_name
}

output "lb_zone_id" {
  description = "Route 53 zone of the load balancer, for an alias record."
  value       = aws_lb.this.zone_id
}

output "replica_bucket_arn" {
  description = "ARN of the replica bucket (the root module's `replicas[<region>].bucket_arn`); null without one."
  value       = one(module.replica_bucket[*].bucket_arn)
}

output "replica_bucket_id" {
  description = "Name of the replica bucket; null without one."
  value       = one(module.replica_bucket[*].bucket_id)
}

output "store_urls" {
  description = "The gateway's stores in the order it reads them (its `storage:`)."
  value       = local.store_urls
}

output "config_yaml" {
  description = "The regfront config the gateway runs with."
  value       = local.config_yaml
}

output "gateway_role_arn" {
  description = "ARN of the role the gateway runs as (and signs blob URLs with)."
  value       = aws_iam_role.gateway.arn
}

output "gateway_security_group_id" {
  description = "Security group of the gateway tasks or function."
  value       = aws_security_group.gateway.id
}

output "ecs_service_name" {
  description = "Name of the gateway's ECS service; null for lambda."
  value       = one(aws_ecs_service.this[*].name)
}

output "ecs_cluster_arn" {
  description = "ARN of the gateway's ECS cluster; null for lambda."
  value       = one(aws_ecs_cluster.this[*].arn)
}

output "lambda_function_arn" {
  description = "ARN of the gateway function; null for fargate."
  value       = one(aws_lambda_function.this[*].arn)
}

output "log_group_name" {
  description = "CloudWatch log group of the gateway."
  value       = aws_cloudwatch_log_group.this.name
}

output "s3_endpoint_ids" {
  description = "IDs of the S3 gateway endpoints, by the names in `s3_endpoint_vpcs`."
  value       = { for name, endpoint in aws_vpc_endpoint.this : name => endpoint.id }
}
