################################################################################
# The sync worker: `regfront sync --once` as a Container Apps job on a cron schedule, in the
# sync region's environment. It reads and writes the primary only; the replicas get its
# writes by object replication.
################################################################################

locals {
  sync_region = coalesce(var.sync_region, var.location)
  sync_config = merge(var.config, { storage = [{ url = local.store_urls["primary"] }] })
  # Container Apps secret names: lowercase letters, digits, - and .
  sync_secret_names = { for variable, id in var.sync_secrets : variable => lower(replace(variable, "_", "-")) }
}

resource "azurerm_role_assignment" "sync_secrets" {
  for_each = var.sync_enabled && var.key_vault_id != null ? var.sync_secrets : {}

  # A secret's versionless ID is https://<vault>.vault.azure.net/secrets/<name>.
  scope                = "${var.key_vault_id}/secrets/${split("/", each.value)[4]}"
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.sync[0].principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_container_app_job" "this" {
  count = var.sync_enabled ? 1 : 0

  name                         = "${var.name}-sync"
  resource_group_name          = var.resource_group_name
  location                     = local.sync_region
  container_app_environment_id = azurerm_container_app_environment.this[local.sync_region].id
  workload_profile_name        = "Consumption"
  replica_timeout_in_seconds   = var.sync_timeout
  # The next scheduled run is the retry.
  replica_retry_limit = 0
  tags                = var.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.sync[0].id]
  }

  schedule_trigger_config {
    cron_expression          = var.sync_schedule
    parallelism              = 1
    replica_completion_count = 1
  }

  dynamic "registry" {
    for_each = length(var.acr_ids) > 0 ? [split("/", var.sync_image)[0]] : []

    content {
      server   = registry.value
      identity = azurerm_user_assigned_identity.sync[0].id
    }
  }

  dynamic "secret" {
    for_each = var.sync_secrets

    content {
      name                = local.sync_secret_names[secret.key]
      key_vault_secret_id = secret.value
      identity            = azurerm_user_assigned_identity.sync[0].id
    }
  }

  template {
    container {
      name    = "sync"
      image   = var.sync_image
      cpu     = var.sync_cpu
      memory  = var.sync_memory
      command = local.command
      args    = ["sync", "--once", "--json"]

      env {
        name  = "REGFRONT_CONFIG"
        value = "/tmp/regfront.yaml"
      }

      env {
        name  = "REGFRONT_CONFIG_YAML"
        value = yamlencode(local.sync_config)
      }

      env {
        name  = "AZURE_CLIENT_ID"
        value = azurerm_user_assigned_identity.sync[0].client_id
      }

      dynamic "env" {
        for_each = var.sync_secrets

        content {
          name        = env.key
          secret_name = local.sync_secret_names[env.key]
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.sync_image != null && contains(keys(var.regions), local.sync_region)
      error_message = "The sync worker needs sync_image and runs in a gateway region's environment: sync_region (default: location) must be a key of regions (or set sync_enabled = false)."
    }

    precondition {
      condition     = length(var.sync_secrets) == 0 || var.key_vault_id != null
      error_message = "sync_secrets are read from Key Vault: set key_vault_id, the vault that holds them."
    }
  }

  depends_on = [
    azurerm_role_assignment.sync,
    azurerm_role_assignment.sync_secrets,
    azurerm_role_assignment.acr_pull,
  ]
}
