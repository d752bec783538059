output "gateway_urls" {
  description = "The gateway each region's nodes use, by region: the node agent's `gateway` setting."
  value       = module.regfront.gateway_urls
}

output "bucket_name" {
  description = "Name of the bucket."
  value       = module.regfront.bucket_name
}

output "sync_job_name" {
  description = "The sync job: `gcloud run jobs execute` it once after the first apply instead of waiting for the schedule."
  value       = module.regfront.sync_job_name
}
