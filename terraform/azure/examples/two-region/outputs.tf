output "gateway_urls" {
  description = "The gateway each region's nodes use, by region: the node agent's `gateway` setting."
  value       = module.regfront.gateway_urls
}

output "storage_account_name" {
  description = "Name of the primary storage account."
  value       = module.regfront.storage_account_name
}

output "replica_storage_account_names" {
  description = "Name of the replica storage account, by region."
  value       = module.regfront.replica_storage_account_names
}

output "sync_job_name" {
  description = "The sync job: `az containerapp job start` it once after the first apply instead of waiting for the schedule."
  value       = module.regfront.sync_job_name
}
