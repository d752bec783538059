variable "name" {
  description = "Prefix for the names of everything this module creates (the region is appended where names must be unique)."
  type        = string
  default     = "regfront"
}

variable "primary_bucket_arn" {
  description = "ARN of the primary bucket (the root module's `bucket_arn`)."
  type        = string
}

variable "primary_bucket_name" {
  description = "Name of the primary bucket (the root module's `bucket_id`)."
  type        = string
}

variable "primary_bucket_region" {
  description = "Region of the primary bucket (the root module's `bucket_region`)."
  type        = string
}

variable "storage_prefix" {
  description = "Key prefix of the store in the buckets; the same as the root module's."
  type        = string
  default     = "mirror"
}

variable "create_replica_bucket" {
  description = "Create a replica bucket in this region, read first (false in the primary's region)."
  type        = bool
  default     = true
}

variable "replica_bucket_name" {
  description = "Name of the replica bucket; default `<primary bucket>-<region>`."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete the replica bucket with the images in it."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days an old version of a replicated object is kept in the replica bucket."
  type        = number
  default     = 7
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which an unfinished multipart upload in the replica bucket is aborted."
  type        = number
  default     = 1
}

variable "image" {
  description = "regfront image URI in an ECR repository of this region (Lambda requires one), e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/regfront:0.1.0."
  type        = string
}

variable "gateway_type" {
  description = "How the gateway runs: `fargate` (an ECS service, the default) or `lambda` (a container-image function, for low-traffic regions)."
  type        = string
  default     = "fargate"

  validation {
    condition     = contains(["fargate", "lambda"], var.gateway_type)
    error_message = "gateway_type must be fargate or lambda."
  }
}

variable "config" {
  description = "regfront's configuration (upstreams, mirror, gateway sections) as an object, the same as the root module's; `storage` is set by the module (replica first, primary last)."
  type        = any
  default     = {}
}

variable "pull_through" {
  description = "Grant the gateway write access to the whole primary store, which `on_miss: pull-through` needs; otherwise it may write only the miss queue (`regfront/v1/misses/`)."
  type        = bool
  default     = false
}

variable "vpc_id" {
  description = "VPC of the load balancer and the gateway."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (two or more zones) for the load balancer and the gateway; the gateway needs a route to S3 and ECR (endpoints or NAT)."
  type        = list(string)
}

variable "allowed_cidr_blocks" {
  description = "Networks that may reach the load balancer: the nodes' subnets."
  type        = list(string)
}

variable "s3_gateway_endpoint" {
  description = "Create an S3 gateway VPC endpoint in each VPC of `s3_endpoint_vpcs`, so nodes fetch the pre-signed blob URLs without a NAT gateway (no hourly or per-GB charge). Set false where those route tables already have an S3 endpoint: a route table takes one."
  type        = bool
  default     = true
}

variable "s3_endpoint_vpcs" {
  description = "The VPCs of this region that get the S3 gateway endpoint, by a name of your choice: each with the route tables of the subnets that pull - the nodes' and the gateway's (`subnet_ids`), and in the primary's region the sync task's."
  type = map(object({
    vpc_id          = string
    route_table_ids = list(string)
  }))
  default = {}
}

variable "internal" {
  description = "Make the load balancer internal (reachable from the VPC and what is peered with it only)."
  type        = bool
  default     = true
}

variable "certificate_arn" {
  description = "ACM certificate for an HTTPS listener on 443; without one the listener is HTTP on 80."
  type        = string
  default     = null
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion."
  type        = bool
  default     = true
}

variable "desired_count" {
  description = "Gateway tasks (fargate)."
  type        = number
  default     = 2
}

variable "cpu" {
  description = "Fargate CPU units of a gateway task."
  type        = number
  default     = 512
}

variable "memory" {
  description = "Fargate memory (MiB) of a gateway task."
  type        = number
  default     = 1024
}

variable "workers" {
  description = "uvicorn worker processes per gateway task (REGFRONT_WORKERS)."
  type        = number
  default     = 1
}

variable "cpu_architecture" {
  description = "CPU architecture of the gateway: X86_64 or ARM64 (the image must have it)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "lambda_memory_size" {
  description = "Memory (MB) of the gateway function (lambda); CPU grows with it."
  type        = number
  default     = 1024
}

variable "lambda_timeout" {
  description = "Seconds a gateway invocation may take (lambda)."
  type        = number
  default     = 15
}

variable "lambda_reserved_concurrency" {
  description = "Concurrent executions reserved for (and capping) the gateway function; null for the account's unreserved pool."
  type        = number
  default     = null
}

variable "secrets" {
  description = "Environment variables of the gateway task read from Secrets Manager or SSM, by name: ARN (upstream credentials for pull-through and tag checks). Fargate only."
  type        = map(string)
  default     = {}
}

variable "environment" {
  description = "Plain environment variables of the gateway."
  type        = map(string)
  default     = {}
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the gateway's logs."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
