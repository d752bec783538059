variable "primary_region" {
  description = "Region of the primary storage account, the sync job and the first gateway."
  type        = string
  default     = "westeurope"
}

variable "secondary_region" {
  description = "Region of the replica storage account and the second gateway."
  type        = string
  default     = "northeurope"
}

variable "resource_group_name" {
  description = "An existing resource group for everything."
  type        = string
}

variable "storage_account_name" {
  description = "Name of the primary storage account (3-24 lowercase letters and digits, globally unique)."
  type        = string
}

variable "replica_storage_account_name" {
  description = "Name of the replica storage account in the secondary region."
  type        = string
}

variable "images" {
  description = "regfront image in each region's registry, by region (never pulled through regfront)."
  type        = map(string)
}

variable "acr_ids" {
  description = "Resource IDs of the Azure Container Registries holding the images (AcrPull is granted on them)."
  type        = list(string)
  default     = []
}

variable "networks" {
  description = "Per region: the Container Apps subnet (/27 or larger, delegated to Microsoft.App/environments) and the virtual networks of the nodes that resolve the gateway."
  type = map(object({
    infrastructure_subnet_id = string
    node_virtual_network_ids = list(string)
  }))
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
  description = "Key Vault secret IDs (versionless) of the upstream credentials, by the environment variable `upstreams` names for them."
  type        = map(string)
  default     = {}
}

variable "key_vault_id" {
  description = "Resource ID of the Key Vault holding `sync_secrets`."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = { "app" = "regfront" }
}
