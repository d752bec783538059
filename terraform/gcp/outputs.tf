output "bucket_name" {
  description = "Name of the bucket."
  value       = google_storage_bucket.this.name
}

output "bucket_url" {
  description = "gs:// URL of the bucket."
  value       = google_storage_bucket.this.url
}

output "store_url" {
  description = "The store as regfront names it (the `storage:` entry)."
  value       = local.store_url
}

output "gateway_urls" {
  description = "Each region's gateway URL, by region: the node agent's `gateway` setting for that region's clusters."
  value       = { for region, service in google_cloud_run_v2_service.this : region => service.uri }
}

output "gateway_service_account_email" {
  description = "Service account the gateways run as."
  value       = google_service_account.gateway.email
}

output "sync_service_account_email" {
  description = "Service account the sync job runs as; null when sync is disabled."
  value       = one(google_service_account.sync[*].email)
}

output "sync_job_name" {
  description = "Name of the sync job (`gcloud run jobs execute` it once after the first apply); null when sync is disabled."
  value       = one(google_cloud_run_v2_job.this[*].name)
}

output "sync_scheduler_job_name" {
  description = "Name of the Cloud Scheduler job that starts the sync job; null when sync is disabled."
  value       = one(google_cloud_scheduler_job.this[*].name)
}

output "config_yaml" {
  description = "The regfront config the gateways and the sync job run with."
  value       = local.config_yaml
}
