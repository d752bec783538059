variable "project_id" {
  description = "Project everything is created in."
  type        = string
}

variable "name" {
  description = "Prefix for the names of everything this module creates."
  type        = string
  default     = "regfront"
}

variable "bucket_name" {
  description = "Name of the bucket (globally unique)."
  type        = string
}

variable "location" {
  description = "Location of the bucket: a multi-region (EU, US, ASIA), a predefined dual-region (EUR4, NAM4), or the multi-region of `data_locations`."
  type        = string
  default     = "EU"
}

variable "data_locations" {
  description = "Two regions for a configurable dual-region bucket (e.g. [\"EUROPE-WEST1\", \"EUROPE-WEST4\"]), inside `location`; empty for a multi- or predefined dual-region."
  type        = list(string)
  default     = []
}

variable "turbo_replication" {
  description = "Turbo replication (dual-region buckets only): new objects in both regions within 15 minutes."
  type        = bool
  default     = false
}

variable "storage_prefix" {
  description = "Key prefix of the store in the bucket (registry:2's rootdirectory); empty for the bucket root."
  type        = string
  default     = "mirror"
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete the bucket with the images in it."
  type        = bool
  default     = false
}

variable "noncurrent_version_retention_days" {
  description = "Days an overwritten or deleted object's old version is kept."
  type        = number
  default     = 7
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which an unfinished multipart upload (a killed sync or pull-through) is aborted."
  type        = number
  default     = 1
}

variable "regions" {
  description = "The gateway's Cloud Run regions, each with the regfront image in that region's Artifact Registry."
  type = map(object({
    image = string
  }))
}

variable "ingress" {
  description = "Who may reach the gateways: INGRESS_TRAFFIC_INTERNAL_ONLY (VPC networks of the project, the default), INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER, or INGRESS_TRAFFIC_ALL."
  type        = string
  default     = "INGRESS_TRAFFIC_INTERNAL_ONLY"

  validation {
    condition     = contains(["INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "INGRESS_TRAFFIC_ALL"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_INTERNAL_ONLY, INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER or INGRESS_TRAFFIC_ALL."
  }
}

variable "allow_unauthenticated" {
  description = "Let requests without a Google identity token invoke the gateways (containerd sends none; `ingress` and regfront's own `auth:` limit access instead)."
  type        = bool
  default     = true
}

variable "gateway_min_instances" {
  description = "Gateway instances kept warm per region."
  type        = number
  default     = 1
}

variable "gateway_max_instances" {
  description = "Most gateway instances per region."
  type        = number
  default     = 20
}

variable "gateway_concurrency" {
  description = "Requests one gateway instance takes at once."
  type        = number
  default     = 200
}

variable "gateway_cpu" {
  description = "CPU of a gateway instance."
  type        = string
  default     = "1"
}

variable "gateway_memory" {
  description = "Memory of a gateway instance."
  type        = string
  default     = "512Mi"
}

variable "workers" {
  description = "uvicorn worker processes per gateway instance (REGFRONT_WORKERS)."
  type        = number
  default     = 1
}

variable "config" {
  description = "regfront's configuration (upstreams, mirror, sync, gateway sections) as an object; `storage` is set by the module. See docs/configuration.md."
  type        = any
  default     = {}
}

variable "pull_through" {
  description = "Let the gateway write the whole store, which `on_miss: pull-through` needs; otherwise it may create only miss records (`regfront/v1/misses/`)."
  type        = bool
  default     = false
}

variable "sync_enabled" {
  description = "Run the sync worker as a Cloud Run job on a Cloud Scheduler schedule."
  type        = bool
  default     = true
}

variable "sync_region" {
  description = "Region of the sync job and its schedule."
  type        = string
  default     = null
}

variable "sync_image" {
  description = "regfront image for the sync job, in an Artifact Registry repository."
  type        = string
  default     = null
}

variable "sync_schedule" {
  description = "cron schedule on which Cloud Scheduler runs `regfront sync --once`."
  type        = string
  default     = "*/15 * * * *"
}

variable "sync_time_zone" {
  description = "Time zone of `sync_schedule`."
  type        = string
  default     = "Etc/UTC"
}

variable "sync_timeout" {
  description = "Longest a sync run may take."
  type        = string
  default     = "3600s"
}

variable "sync_cpu" {
  description = "CPU of the sync job."
  type        = string
  default     = "1"
}

variable "sync_memory" {
  description = "Memory of the sync job."
  type        = string
  default     = "1Gi"
}

variable "sync_secrets" {
  description = "Environment variables of the sync job read from Secret Manager (latest version), by name: secret ID (e.g. the DOCKERHUB_TOKEN an upstream's credentials name)."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect the Cloud Run services and job from `terraform destroy`."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels for every resource that takes them."
  type        = map(string)
  default     = {}
}
