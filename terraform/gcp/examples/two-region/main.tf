# regfront in two Google Cloud regions: one dual-region bucket over both, a gateway on Cloud
# Run in each, and the sync job in the first.

provider "google" {
  project = var.project_id
}

module "regfront" {
  source = "../.."

  project_id        = var.project_id
  bucket_name       = var.bucket_name
  location          = "EU"
  data_locations    = [for region in var.regions : upper(region)]
  turbo_replication = true

  regions = { for region in var.regions : region => { image = var.images[region] } }
  config  = local.config

  sync_region  = var.regions[0]
  sync_image   = var.images[var.regions[0]]
  sync_secrets = var.sync_secrets
  labels       = var.labels
}
