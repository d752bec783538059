variable "name" {
  description = "Prefix for the names of everything this module creates (the region is appended where names must be unique)."
  type        = string
  default     = "regfront"
}

variable "resource_group_name" {
  description = "Resource group everything is created in (it may hold resources of every region)."
  type        = string
}

variable "location" {
  description = "Region of the primary storage account (the one sync writes), the identities and the log workspace; sync runs here unless `sync_region` says otherwise."
  type        = string
}

variable "storage_account_name" {
  description = "Name of the primary storage account: 3-24 lowercase letters and digits, globally unique."
  type        = string
}

variable "account_replication_type" {
  description = "Redundancy of the primary account: LRS, ZRS, GRS, RAGRS, GZRS or RAGZRS. Geo-redundancy keeps a copy in the paired region for durability; the gateways read their own region's replica (object replication), not the geo-secondary, and an account in an object replication policy cannot be failed over."
  type        = string
  default     = "ZRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.account_replication_type)
    error_message = "account_replication_type must be LRS, ZRS, GRS, RAGRS, GZRS or RAGZRS."
  }
}

variable "replica_replication_type" {
  description = "Redundancy of each replica account: LRS or ZRS (the primary holds the durable copy)."
  type        = string
  default     = "ZRS"

  validation {
    condition     = contains(["LRS", "ZRS"], var.replica_replication_type)
    error_message = "replica_replication_type must be LRS or ZRS."
  }
}

variable "container_name" {
  description = "Name of the blob container in every account."
  type        = string
  default     = "regfront"
}

variable "storage_prefix" {
  description = "Key prefix of the store in the container (registry:2's rootdirectory); empty for the container root."
  type        = string
  default     = "mirror"
}

variable "noncurrent_version_retention_days" {
  description = "Days an overwritten or deleted blob's old version is kept (versioning is on: object replication needs it on both sides)."
  type        = number
  default     = 7
}

variable "soft_delete_retention_days" {
  description = "Days a deleted blob or container can be restored."
  type        = number
  default     = 7
}

variable "storage_network_rules" {
  description = "Firewall of every storage account; null leaves the public endpoint open to authenticated requests (Entra ID and user delegation SAS only: shared keys are off). With `default_action = \"Deny\"`, list every subnet that reads a bucket - the Container Apps subnets and the nodes' - each with a Microsoft.Storage service endpoint (Microsoft.Storage.Global for an account in another region), and the NAT or public IPs of anything else."
  type = object({
    default_action = string
    subnet_ids     = optional(list(string), [])
    ip_rules       = optional(list(string), [])
  })
  default = null
}

variable "regions" {
  description = "The gateway's regions, by Azure location name: the regfront image there, the subnet of its Container Apps environment (a /27 or larger delegated to Microsoft.App/environments), optionally a replica account that object replication fills (null: that region reads the primary only, as the primary's own region does), and the virtual networks whose nodes resolve the gateway's name (private DNS zone links)."
  type = map(object({
    image                        = string
    infrastructure_subnet_id     = string
    replica_storage_account_name = optional(string)
    dns_virtual_network_ids      = optional(list(string), [])
  }))
}

variable "acr_ids" {
  description = "Azure Container Registries holding the image (by resource ID): the gateway and sync identities get AcrPull on each and pull with it. Empty for a registry that needs no credentials."
  type        = list(string)
  default     = []
}

variable "gateway_min_replicas" {
  description = "Gateway replicas kept running per region."
  type        = number
  default     = 1
}

variable "gateway_max_replicas" {
  description = "Most gateway replicas per region."
  type        = number
  default     = 10
}

variable "gateway_concurrency" {
  description = "Concurrent requests per gateway replica before Container Apps adds one."
  type        = number
  default     = 200
}

variable "gateway_cpu" {
  description = "CPU cores of a gateway replica (Consumption profile: 0.25 to 4, memory twice as many GiB)."
  type        = number
  default     = 1
}

variable "gateway_memory" {
  description = "Memory of a gateway replica, e.g. 2Gi."
  type        = string
  default     = "2Gi"
}

variable "workers" {
  description = "uvicorn worker processes per gateway replica (REGFRONT_WORKERS)."
  type        = number
  default     = 1
}

variable "config" {
  description = "regfront's configuration (upstreams, mirror, sync, gateway sections) as an object; `storage` is set by the module. See docs/configuration.md."
  type        = any
  default     = {}
}

variable "pull_through" {
  description = "Let the gateway write the whole primary container, which `on_miss: pull-through` needs; otherwise it may create blobs only under the miss queue (`regfront/v1/misses/`)."
  type        = bool
  default     = false
}

variable "sync_enabled" {
  description = "Run the sync worker as a Container Apps job on a cron schedule."
  type        = bool
  default     = true
}

variable "sync_region" {
  description = "Region of the sync job, one of `regions` (it runs in that region's Container Apps environment); null for `location`."
  type        = string
  default     = null
}

variable "sync_image" {
  description = "regfront image for the sync job, e.g. acme.azurecr.io/regfront:0.1.0."
  type        = string
  default     = null
}

variable "sync_schedule" {
  description = "cron expression (UTC) on which the job runs `regfront sync --once` (each run syncs every rule; rules a running worker holds are skipped)."
  type        = string
  default     = "*/15 * * * *"
}

variable "sync_timeout" {
  description = "Seconds a sync run may take before Container Apps stops it."
  type        = number
  default     = 3600
}

variable "sync_cpu" {
  description = "CPU cores of the sync job."
  type        = number
  default     = 1
}

variable "sync_memory" {
  description = "Memory of the sync job, e.g. 2Gi."
  type        = string
  default     = "2Gi"
}

variable "sync_secrets" {
  description = "Environment variables of the sync job read from Key Vault, by name: the secret's versionless ID, e.g. https://acme-kv.vault.azure.net/secrets/dockerhub-token (the DOCKERHUB_TOKEN an upstream's credentials name)."
  type        = map(string)
  default     = {}
}

variable "key_vault_id" {
  description = "Resource ID of the Key Vault (RBAC authorization) holding `sync_secrets`: the sync identity gets Key Vault Secrets User on each of those secrets. Required with `sync_secrets`."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Days the Log Analytics workspace keeps the gateway's and sync job's logs (30 to 730)."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}
