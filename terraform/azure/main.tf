# regfront on Azure: the primary storage account (the one sync writes) and one replica account
# per region that asks for one, filled by object replication; the gateway on Azure Container
# Apps in each region, in an internal environment on a VNet subnet (gateway.tf); the sync worker
# as a Container Apps job on a cron schedule (sync.tf). Gateway and sync reach the containers
# through the native Azure store (az://) as their user-assigned managed identities: no account
# key anywhere (shared keys are off), blob redirects are user delegation SAS URLs.

locals {
  prefix     = trim(var.storage_prefix, "/")
  key_prefix = local.prefix == "" ? "" : "${local.prefix}/"
  path       = local.prefix == "" ? "" : "/${local.prefix}"

  # Every account: the primary, then each region's replica.
  accounts = merge(
    { primary = { name = var.storage_account_name, location = var.location } },
    {
      for region, settings in var.regions : region => {
        name     = settings.replica_storage_account_name
        location = region
      } if settings.replica_storage_account_name != null
    },
  )
  replicas = { for key, account in local.accounts : key => account if key != "primary" }

  store_urls = { for key, account in local.accounts : key => "az://${var.container_name}${local.path}?account=${account.name}" }
  # ARM scope of each account's container, for role assignments limited to it.
  container_scopes = { for key, account in azurerm_storage_account.this : key => "${account.id}/blobServices/default/containers/${var.container_name}" }

  config_pull_through = anytrue([
    for upstream in values(try(var.config.upstreams, {})) : try(upstream.on_miss, "fallthrough") == "pull-through"
  ])

  # The image's ENTRYPOINT is `regfront`; Container Apps mounts no config, so the rendered
  # config travels in REGFRONT_CONFIG_YAML and this wrapper writes it where REGFRONT_CONFIG
  # points, then exec's regfront (PID 1, so SIGTERM reaches it and uvicorn drains).
  command = [
    "/bin/sh", "-c",
    "printf '%s\\n' \"$REGFRONT_CONFIG_YAML\" >/tmp/regfront.yaml && exec regfront \"$@\"",
    "regfront",
  ]
}

################################################################################
# Storage: private, Entra ID only, versioned (object replication needs it on both sides), the
# primary with the change feed object replication reads.
################################################################################

resource "azurerm_storage_account" "this" {
  for_each = local.accounts

  name                              = each.value.name
  resource_group_name               = var.resource_group_name
  location                          = each.value.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = each.key == "primary" ? var.account_replication_type : var.replica_replication_type
  access_tier                       = "Hot"
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false
  infrastructure_encryption_enabled = true
  tags                              = var.tags

  blob_properties {
    versioning_enabled  = true
    change_feed_enabled = each.key == "primary"
    # Object replication reads the source's change feed; a week of it is plenty.
    change_feed_retention_in_days = each.key == "primary" ? 7 : null

    delete_retention_policy {
      days = var.soft_delete_retention_days
    }

    container_delete_retention_policy {
      days = var.soft_delete_retention_days
    }
  }

  # A guard should shared keys ever be turned on: key-signed SAS valid for over an hour is
  # logged. (The gateway's user delegation SAS lives gateway.presign_expiry, 20 minutes.)
  sas_policy {
    expiration_period = "0.01:00:00"
    expiration_action = "Log"
  }

  dynamic "network_rules" {
    for_each = var.storage_network_rules == null ? [] : [var.storage_network_rules]

    content {
      default_action             = network_rules.value.default_action
      virtual_network_subnet_ids = network_rules.value.subnet_ids
      ip_rules                   = network_rules.value.ip_rules
      bypass                     = ["AzureServices"]
    }
  }
}

# Created through Azure Resource Manager (storage_account_id), which works with shared keys off.
resource "azurerm_storage_container" "this" {
  for_each = local.accounts

  name                  = var.container_name
  storage_account_id    = azurerm_storage_account.this[each.key].id
  container_access_type = "private"
}

resource "azurerm_storage_management_policy" "this" {
  for_each = local.accounts

  storage_account_id = azurerm_storage_account.this[each.key].id

  rule {
    name    = "expire-old-versions"
    enabled = true

    filters {
      blob_types = ["blockBlob"]
    }

    actions {
      version {
        delete_after_days_since_creation = var.noncurrent_version_retention_days
      }
    }
  }
}

# Image content only (not sync leases, state or the miss queue, whose readers use the
# primary), including what is already there. Replication does not keep write order: gateways
# read the replica first and fall back to the primary.
resource "azurerm_storage_object_replication" "this" {
  for_each = local.replicas

  source_storage_account_id      = azurerm_storage_account.this["primary"].id
  destination_storage_account_id = azurerm_storage_account.this[each.key].id

  rules {
    source_container_name        = azurerm_storage_container.this["primary"].name
    destination_container_name   = azurerm_storage_container.this[each.key].name
    copy_blobs_created_after     = "Everything"
    filter_out_blobs_with_prefix = ["${local.key_prefix}docker/registry/v2/"]
  }
}

################################################################################
# Identities and what they may do: the gateway reads every container (its SAS URLs grant what
# it may read) and gets user delegation keys at account scope, where that action is checked;
# it creates blobs only in the primary's miss queue, or writes the whole primary with
# pull-through. Sync reads and writes the primary container.
################################################################################

resource "azurerm_user_assigned_identity" "gateway" {
  name                = "${var.name}-gateway"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags
}

resource "azurerm_user_assigned_identity" "sync" {
  count = var.sync_enabled ? 1 : 0

  name                = "${var.name}-sync"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags
}

resource "azurerm_role_assignment" "gateway_read" {
  for_each = local.accounts

  scope                = local.container_scopes[each.key]
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = azurerm_user_assigned_identity.gateway.principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "gateway_delegator" {
  for_each = local.accounts

  scope                = azurerm_storage_account.this[each.key].id
  role_definition_name = "Storage Blob Delegator"
  principal_id         = azurerm_user_assigned_identity.gateway.principal_id
  principal_type       = "ServicePrincipal"
}

# Create and write blobs, nothing else; the assignment's condition limits it to the miss queue.
resource "azurerm_role_definition" "this" {
  count = var.pull_through ? 0 : 1

  name        = "${var.name}-miss-writer-${var.storage_account_name}"
  scope       = azurerm_storage_account.this["primary"].id
  description = "regfront gateway: create blobs, limited by its assignment's condition to the miss queue."

  permissions {
    data_actions = [
      "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
      "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
    ]
  }

  assignable_scopes = [azurerm_storage_account.this["primary"].id]
}

resource "azurerm_role_assignment" "gateway_misses" {
  count = var.pull_through ? 0 : 1

  scope              = local.container_scopes["primary"]
  role_definition_id = azurerm_role_definition.this[0].role_definition_resource_id
  principal_id       = azurerm_user_assigned_identity.gateway.principal_id
  principal_type     = "ServicePrincipal"
  description        = "regfront gateway: the miss queue only"
  condition_version  = "2.0"
  condition          = <<-EOT
    (
     (
      !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'})
      AND
      !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'})
     )
     OR
     (
      @Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike '${local.key_prefix}regfront/v1/misses/*'
     )
    )
  EOT
}

resource "azurerm_role_assignment" "gateway_pull_through" {
  count = var.pull_through ? 1 : 0

  scope                = local.container_scopes["primary"]
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.gateway.principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "sync" {
  count = var.sync_enabled ? 1 : 0

  scope                = local.container_scopes["primary"]
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.sync[0].principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "acr_pull" {
  for_each = {
    for pair in setproduct(range(length(var.acr_ids)), var.sync_enabled ? ["gateway", "sync"] : ["gateway"]) :
    "${pair[1]}-${pair[0]}" => { registry = var.acr_ids[pair[0]], identity = pair[1] }
  }

  scope                = each.value.registry
  role_definition_name = "AcrPull"
  principal_id         = each.value.identity == "gateway" ? azurerm_user_assigned_identity.gateway.principal_id : azurerm_user_assigned_identity.sync[0].principal_id
  principal_type       = "ServicePrincipal"
}

resource "terraform_data" "this" {
  lifecycle {
    precondition {
      condition     = var.pull_through || !local.config_pull_through
      error_message = "An upstream uses on_miss: pull-through, which writes to the primary store: set pull_through = true."
    }
  }
}
