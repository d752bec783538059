output "gateway_urls" {
  description = "The gateway each region's nodes use, by region: the node agent's `gateway` setting."
  value = {
    (var.primary_region)   = module.gateway_primary.gateway_url
    (var.secondary_region) = module.gateway_secondary.gateway_url
  }
}

output "bucket_id" {
  description = "Name of the primary bucket."
  value       = module.regfront.bucket_id
}

output "replica_bucket_id" {
  description = "Name of the replica bucket."
  value       = module.gateway_secondary.replica_bucket_id
}

output "sync_task_definition_arn" {
  description = "The sync task: `aws ecs run-task` it once after the first apply instead of waiting for the schedule."
  value       = module.regfront.sync_task_definition_arn
}

output "sync_cluster_arn" {
  description = "The cluster the sync task runs in."
  value       = module.regfront.sync_cluster_arn
}
