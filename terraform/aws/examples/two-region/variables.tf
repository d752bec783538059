variable "primary_region" {
  description = "Region of the primary bucket, the sync worker and the first gateway."
  type        = string
  default     = "eu-west-1"
}

variable "secondary_region" {
  description = "Region of the replica bucket and the second gateway."
  type        = string
  default     = "us-east-1"
}

variable "bucket_name" {
  description = "Name of the primary bucket; the replica is `<bucket_name>-<secondary_region>`."
  type        = string
}

variable "images" {
  description = "regfront image URI in each region's ECR, by region (Lambda and the gateway pull it there, never through regfront)."
  type        = map(string)
}

variable "networks" {
  description = "Per region: the VPC, its private subnets, the nodes' CIDR blocks allowed to reach the gateway, and the route tables (the nodes' and the gateway's subnets') that get an S3 gateway endpoint."
  type = map(object({
    vpc_id              = string
    subnet_ids          = list(string)
    allowed_cidr_blocks = list(string)
    route_table_ids     = list(string)
  }))
}

variable "secondary_gateway_type" {
  description = "How the secondary region's gateway runs: fargate or lambda (little traffic)."
  type        = string
  default     = "lambda"
}

variable "upstreams" {
  description = "Upstream registries by name: their URLs and, optionally, the environment variables holding credentials."
  type = map(object({
    urls         = list(string)
    username_env = optional(string)
    password_env = optional(string)
  }))
  default = {
    "docker.io" = { urls = ["https://registry-1.docker.io"] }
    "ghcr.io"   = { urls = ["https://ghcr.io"] }
  }
}

variable "mirror_rules" {
  description = "What sync mirrors: regfront `mirror:` rules with every field the YAML has (docs/sync.md), the `tags:` filter's fields (include, exclude, semver, latest, names) flattened into the rule. The default mirrors nginx only; terraform.tfvars.example shows every field."
  type = list(object({
    name         = string
    registry     = string
    repositories = list(string)
    include      = optional(list(string), [])
    exclude      = optional(list(string), [])
    semver       = optional(string)
    latest       = optional(number)
    names        = optional(list(string), [])
    digests      = optional(list(string), [])
    platforms    = optional(list(string), ["linux/amd64", "linux/arm64"])
    referrers    = optional(bool, false)
    schedule     = optional(string, "*/30 * * * *")
    tag_ttl      = optional(string)
    retention = optional(object({
      pulled_within = optional(string)
      newest        = optional(number, 0)
    }))
  }))
  default = [{
    name         = "nginx"
    registry     = "docker.io"
    repositories = ["library/nginx"]
    semver       = ">=1.25 <2"
    latest       = 3
  }]
}

variable "sync_secrets" {
  description = "Secrets Manager or SSM ARNs of the upstream credentials, by the environment variable `upstreams` names for them."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = { "app" = "regfront" }
}
