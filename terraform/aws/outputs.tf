output "bucket_id" {
  description = "Name of the primary bucket."
  value       = module.bucket.bucket_id
}

output "bucket_arn" {
  description = "ARN of the primary bucket (each region's `primary_bucket_arn`)."
  value       = module.bucket.bucket_arn
}

output "bucket_region" {
  description = "Region of the primary bucket (each region's `primary_bucket_region`)."
  value       = module.bucket.bucket_region
}

output "store_url" {
  description = "The primary store as regfront names it (the last `storage:` entry)."
  value       = local.store_url
}

output "replication_role_arn" {
  description = "ARN of the role S3 replicates with; null without replicas."
  value       = one(aws_iam_role.replication[*].arn)
}

output "sync_cluster_arn" {
  description = "ARN of the ECS cluster the sync task runs in; null when sync is disabled."
  value       = one(aws_ecs_cluster.this[*].arn)
}

output "sync_task_definition_arn" {
  description = "ARN of the sync task definition (run it by hand with `aws ecs run-task`); null when sync is disabled."
  value       = one(aws_ecs_task_definition.this[*].arn)
}

output "sync_task_role_arn" {
  description = "ARN of the role the sync task runs as; null when sync is disabled."
  value       = one(aws_iam_role.sync_task[*].arn)
}

output "sync_schedule_arn" {
  description = "ARN of the EventBridge Scheduler schedule that starts the sync task; null when sync is disabled."
  value       = one(aws_scheduler_schedule.this[*].arn)
}

output "sync_log_group_name" {
  description = "CloudWatch log group of the sync task (one JSON line per image, then a summary); null when sync is disabled."
  value       = one(aws_cloudwatch_log_group.this[*].name)
}
