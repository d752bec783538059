variable "project_id" {
  description = "Project to deploy into."
  type        = string
}

variable "bucket_name" {
  description = "Name of the bucket (globally unique)."
  type        = string
}

variable "regions" {
  description = "The two gateway regions; the bucket is the dual-region of their locations, and sync runs in the first."
  type        = list(string)
  default     = ["europe-west1", "europe-west4"]
}

variable "images" {
  description = "regfront image in each region's Artifact Registry, by region (never pulled through regfront)."
  type        = map(string)
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
  description = "Secret Manager secret IDs of the upstream credentials, by the environment variable `upstreams` names for them."
  type        = map(string)
  default     = {}
}

variable "labels" {
  description = "Labels for every resource that takes them."
  type        = map(string)
  default     = { "app" = "regfront" }
}
