variable "name" {
  description = "Prefix for the names of everything this module creates."
  type        = string
  default     = "regfront"
}

variable "bucket_name" {
  description = "Name of the primary bucket: the one sync writes to and the replicas copy."
  type        = string
}

variable "storage_prefix" {
  description = "Key prefix of the store in the bucket (registry:2's rootdirectory); empty for the bucket root."
  type        = string
  default     = "mirror"
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete the primary bucket with the images in it."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days an overwritten or deleted object's old version is kept in the primary bucket."
  type        = number
  default     = 7
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which an unfinished multipart upload in the primary bucket is aborted."
  type        = number
  default     = 1
}

variable "replicas" {
  description = "Replica buckets to replicate the images to, by region: `bucket_arn` from each region's `modules/region` (`replica_bucket_arn`)."
  type = map(object({
    bucket_arn = string
  }))
  default = {}
}

variable "replication_time_control" {
  description = "S3 Replication Time Control: 99.99% of objects replicated within 15 minutes, with replication metrics (extra cost)."
  type        = bool
  default     = false
}

variable "config" {
  description = "regfront's configuration (upstreams, mirror, sync, gateway sections) as an object; `storage` is set by the module. See docs/configuration.md."
  type        = any
  default     = {}
}

variable "sync_enabled" {
  description = "Run the sync worker as a scheduled Fargate task in the primary bucket's region."
  type        = bool
  default     = true
}

variable "sync_image" {
  description = "regfront image URI for the sync task (an ECR repository in this region), e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/regfront:0.1.0."
  type        = string
  default     = null
}

variable "sync_schedule_expression" {
  description = "When EventBridge Scheduler starts `regfront sync --once`: rate() or cron() (each run syncs every rule; rules a running worker holds are skipped)."
  type        = string
  default     = "rate(15 minutes)"
}

variable "sync_cpu" {
  description = "Fargate CPU units of the sync task."
  type        = number
  default     = 1024
}

variable "sync_memory" {
  description = "Fargate memory (MiB) of the sync task."
  type        = number
  default     = 2048
}

variable "sync_cpu_architecture" {
  description = "CPU architecture of the sync task: X86_64 or ARM64 (the image must have it)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.sync_cpu_architecture)
    error_message = "sync_cpu_architecture must be X86_64 or ARM64."
  }
}

variable "vpc_id" {
  description = "VPC of the sync task; a security group allowing HTTPS out is created in it unless `sync_security_group_ids` is set."
  type        = string
  default     = null
}

variable "sync_subnet_ids" {
  description = "Subnets of the sync task: they need a route to the upstream registries (NAT) and to S3."
  type        = list(string)
  default     = []
}

variable "sync_security_group_ids" {
  description = "Security groups of the sync task instead of the one the module creates."
  type        = list(string)
  default     = []
}

variable "sync_assign_public_ip" {
  description = "Give the sync task a public IP (subnets with an internet gateway and no NAT)."
  type        = bool
  default     = false
}

variable "sync_secrets" {
  description = "Environment variables of the sync task read from Secrets Manager or SSM Parameter Store, by name: ARN (e.g. the DOCKERHUB_TOKEN an upstream's credentials name)."
  type        = map(string)
  default     = {}
}

variable "sync_environment" {
  description = "Plain environment variables of the sync task."
  type        = map(string)
  default     = {}
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the sync task's logs."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
