# regfront on Google Cloud: one dual- or multi-region bucket (GCS keeps the copies), the
# gateway on Cloud Run in each region reading it through the native GCS store (gs://, as its
# service account: no keys anywhere), and the sync worker as a Cloud Run job that Cloud
# Scheduler starts.

locals {
  prefix     = trim(var.storage_prefix, "/")
  key_prefix = local.prefix == "" ? "" : "${local.prefix}/"
  store_url  = "gs://${google_storage_bucket.this.name}${local.prefix == "" ? "" : "/${local.prefix}"}"

  config      = merge(var.config, { storage = [{ url = local.store_url }] })
  config_yaml = yamlencode(local.config)

  config_pull_through = anytrue([
    for upstream in values(try(var.config.upstreams, {})) : try(upstream.on_miss, "fallthrough") == "pull-through"
  ])

  # The image's ENTRYPOINT is `regfront`; the rendered config travels in REGFRONT_CONFIG_YAML
  # and this wrapper writes it where REGFRONT_CONFIG points, then exec's regfront (PID 1).
  command = [
    "/bin/sh", "-c",
    "printf '%s\\n' \"$REGFRONT_CONFIG_YAML\" >/tmp/regfront.yaml && exec regfront \"$@\"",
    "regfront",
  ]
}

resource "google_storage_bucket" "this" {
  project                     = var.project_id
  name                        = var.bucket_name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  rpo                         = var.turbo_replication ? "ASYNC_TURBO" : null
  labels                      = var.labels

  dynamic "custom_placement_config" {
    for_each = length(var.data_locations) > 0 ? [1] : []

    content {
      data_locations = var.data_locations
    }
  }

  versioning {
    enabled = true
  }

  # regfront's sync and pull-through upload large blobs in parts; a process killed mid-upload
  # leaves parts that are billed until aborted.
  lifecycle_rule {
    condition {
      age = var.abort_incomplete_multipart_upload_days
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

################################################################################
# Identities and what they may do to the bucket.
################################################################################

resource "google_service_account" "gateway" {
  project      = var.project_id
  account_id   = "${var.name}-gateway"
  display_name = "regfront gateway"
}

resource "google_service_account" "sync" {
  count = var.sync_enabled ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name}-sync"
  display_name = "regfront sync worker"
}

resource "google_service_account" "scheduler" {
  count = var.sync_enabled ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name}-scheduler"
  display_name = "regfront sync schedule"
}

# The gateway reads everything (signed blob URLs grant what its service account may do) ...
resource "google_storage_bucket_iam_member" "gateway_read" {
  bucket = google_storage_bucket.this.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.gateway.member
}

# ... and creates only miss records, unless it pulls through.
resource "google_storage_bucket_iam_member" "gateway_misses" {
  count = var.pull_through ? 0 : 1

  bucket = google_storage_bucket.this.name
  role   = "roles/storage.objectCreator"
  member = google_service_account.gateway.member

  condition {
    title       = "regfront-miss-queue"
    description = "Only the miss queue: regfront/v1/misses/"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.this.name}/objects/${local.key_prefix}regfront/v1/misses/\")"
  }
}

resource "google_storage_bucket_iam_member" "gateway_pull_through" {
  count = var.pull_through ? 1 : 0

  bucket = google_storage_bucket.this.name
  role   = "roles/storage.objectUser"
  member = google_service_account.gateway.member
}

resource "terraform_data" "this" {
  lifecycle {
    precondition {
      condition     = var.pull_through || !local.config_pull_through
      error_message = "An upstream uses on_miss: pull-through, which writes to the store: set pull_through = true."
    }
  }
}

resource "google_storage_bucket_iam_member" "sync" {
  count = var.sync_enabled ? 1 : 0

  bucket = google_storage_bucket.this.name
  role   = "roles/storage.objectUser"
  member = google_service_account.sync[0].member
}

# Blob redirects are V4 signed URLs that the gateway signs through IAM's signBlob as its own
# service account (no key file on Cloud Run): it needs iam.serviceAccounts.signBlob on itself.
resource "google_service_account_iam_member" "this" {
  service_account_id = google_service_account.gateway.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.gateway.member
}

resource "google_secret_manager_secret_iam_member" "this" {
  for_each = var.sync_enabled ? var.sync_secrets : {}

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.sync[0].member
}

################################################################################
# The gateway: a Cloud Run service per region. Cloud Run sets PORT, which `regfront serve`
# listens on.
################################################################################

resource "google_cloud_run_v2_service" "this" {
  for_each = var.regions

  project             = var.project_id
  name                = "${var.name}-gateway"
  location            = each.key
  ingress             = var.ingress
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    service_account                  = google_service_account.gateway.email
    max_instance_request_concurrency = var.gateway_concurrency

    scaling {
      min_instance_count = var.gateway_min_instances
      max_instance_count = var.gateway_max_instances
    }

    containers {
      image   = each.value.image
      command = local.command
      args    = ["serve"]

      ports {
        container_port = 8080
      }

      env {
        name  = "REGFRONT_CONFIG"
        value = "/tmp/regfront.yaml"
      }

      env {
        name  = "REGFRONT_CONFIG_YAML"
        value = local.config_yaml
      }

      env {
        name  = "REGFRONT_WORKERS"
        value = tostring(var.workers)
      }

      resources {
        limits = {
          cpu    = var.gateway_cpu
          memory = var.gateway_memory
        }
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
      }

      liveness_probe {
        http_get {
          path = "/healthz"
        }
      }
    }
  }

  depends_on = [
    google_service_account_iam_member.this,
    terraform_data.this,
  ]
}

# containerd cannot present a Google identity token: the network (ingress) and regfront's own
# auth: decide who pulls.
resource "google_cloud_run_v2_service_iam_member" "this" {
  for_each = var.allow_unauthenticated ? var.regions : {}

  project  = var.project_id
  location = each.key
  name     = google_cloud_run_v2_service.this[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

################################################################################
# The sync worker: `regfront sync --once` as a Cloud Run job, started by Cloud Scheduler.
################################################################################

resource "google_cloud_run_v2_job" "this" {
  count = var.sync_enabled ? 1 : 0

  project             = var.project_id
  name                = "${var.name}-sync"
  location            = var.sync_region
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    task_count = 1

    template {
      service_account = google_service_account.sync[0].email
      timeout         = var.sync_timeout
      # The next scheduled run is the retry.
      max_retries = 0

      containers {
        image   = var.sync_image
        command = local.command
        args    = ["sync", "--once", "--json"]

        env {
          name  = "REGFRONT_CONFIG"
          value = "/tmp/regfront.yaml"
        }

        env {
          name  = "REGFRONT_CONFIG_YAML"
          value = local.config_yaml
        }

        dynamic "env" {
          for_each = var.sync_secrets

          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }

        resources {
          limits = {
            cpu    = var.sync_cpu
            memory = var.sync_memory
          }
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.sync_region != null && var.sync_image != null
      error_message = "The sync worker needs sync_region and sync_image (or set sync_enabled = false)."
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.this]
}

resource "google_cloud_run_v2_job_iam_member" "this" {
  count = var.sync_enabled ? 1 : 0

  project  = var.project_id
  location = var.sync_region
  name     = google_cloud_run_v2_job.this[0].name
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler[0].member
}

resource "google_cloud_scheduler_job" "this" {
  count = var.sync_enabled ? 1 : 0

  project          = var.project_id
  name             = "${var.name}-sync"
  region           = var.sync_region
  schedule         = var.sync_schedule
  time_zone        = var.sync_time_zone
  attempt_deadline = "30s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.sync_region}/jobs/${google_cloud_run_v2_job.this[0].name}:run"

    oauth_token {
      service_account_email = google_service_account.scheduler[0].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.this]
}
