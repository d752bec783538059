################################################################################
# The gateway: per region, a Container Apps environment with an internal load balancer on the
# given VNet subnet, the gateway app in it (reachable from the VNet and what is peered with it,
# never from the internet), and a private DNS zone that makes its name resolve on the nodes.
################################################################################

locals {
  # Nearest first: the region's replica, then the primary (which sync writes and misses go to).
  region_store_urls = {
    for region, settings in var.regions : region => concat(
      settings.replica_storage_account_name == null ? [] : [local.store_urls[region]],
      [local.store_urls["primary"]],
    )
  }
  region_config_yaml = {
    for region, urls in local.region_store_urls : region => yamlencode(merge(var.config, { storage = [for url in urls : { url = url }] }))
  }

  dns_links = merge([
    for region, settings in var.regions : {
      for index, network in settings.dns_virtual_network_ids : "${region}-${index}" => { region = region, network = network }
    }
  ]...)
}

resource "azurerm_log_analytics_workspace" "this" {
  name                = "${var.name}-logs"
  resource_group_name = var.resource_group_name
  location            = var.location
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = var.tags
}

resource "azurerm_container_app_environment" "this" {
  for_each = var.regions

  name                           = "${var.name}-${each.key}"
  resource_group_name            = var.resource_group_name
  location                       = each.key
  infrastructure_subnet_id       = each.value.infrastructure_subnet_id
  internal_load_balancer_enabled = true
  logs_destination               = "log-analytics"
  log_analytics_workspace_id     = azurerm_log_analytics_workspace.this.id
  tags                           = var.tags

  workload_profile {
    name                  = "Consumption"
    workload_profile_type = "Consumption"
  }
}

resource "azurerm_container_app" "this" {
  for_each = var.regions

  name                         = substr("${var.name}-${each.key}", 0, 32)
  resource_group_name          = var.resource_group_name
  container_app_environment_id = azurerm_container_app_environment.this[each.key].id
  revision_mode                = "Single"
  workload_profile_name        = "Consumption"
  tags                         = var.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.gateway.id]
  }

  dynamic "registry" {
    for_each = length(var.acr_ids) > 0 ? [split("/", each.value.image)[0]] : []

    content {
      server   = registry.value
      identity = azurerm_user_assigned_identity.gateway.id
    }
  }

  # "External" ingress of an internal environment: the environment's private IP, reachable from
  # the VNet (and peered ones), not from the internet. HTTP is redirected to HTTPS.
  ingress {
    external_enabled           = true
    target_port                = 5000
    transport                  = "http"
    allow_insecure_connections = false

    traffic_weight {
      latest_revision = true
      percentage      = 100
    }
  }

  template {
    min_replicas = var.gateway_min_replicas
    max_replicas = var.gateway_max_replicas

    http_scale_rule {
      name                = "concurrent-requests"
      concurrent_requests = tostring(var.gateway_concurrency)
    }

    container {
      name    = "gateway"
      image   = each.value.image
      cpu     = var.gateway_cpu
      memory  = var.gateway_memory
      command = local.command
      args    = ["serve"]

      env {
        name  = "REGFRONT_CONFIG"
        value = "/tmp/regfront.yaml"
      }

      env {
        name  = "REGFRONT_CONFIG_YAML"
        value = local.region_config_yaml[each.key]
      }

      env {
        name  = "REGFRONT_WORKERS"
        value = tostring(var.workers)
      }

      # azure-identity's ManagedIdentityCredential: which user-assigned identity to use.
      env {
        name  = "AZURE_CLIENT_ID"
        value = azurerm_user_assigned_identity.gateway.client_id
      }

      startup_probe {
        transport = "HTTP"
        port      = 5000
        path      = "/healthz"
      }

      liveness_probe {
        transport = "HTTP"
        port      = 5000
        path      = "/healthz"
      }

      # Not ready: out of the ingress's rotation, which answers 503 at once with none ready, so
      # containerd moves on to the registry instead of waiting.
      readiness_probe {
        transport = "HTTP"
        port      = 5000
        path      = "/readyz"
      }
    }
  }

  depends_on = [
    azurerm_role_assignment.gateway_read,
    azurerm_role_assignment.gateway_delegator,
    azurerm_role_assignment.gateway_misses,
    azurerm_role_assignment.gateway_pull_through,
    azurerm_role_assignment.acr_pull,
    terraform_data.this,
  ]
}

# The app's name is <app>.<environment's default domain>, which only a private DNS zone of that
# name resolves, to the environment's internal load balancer.
resource "azurerm_private_dns_zone" "this" {
  for_each = var.regions

  name                = azurerm_container_app_environment.this[each.key].default_domain
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_private_dns_a_record" "this" {
  for_each = var.regions

  name                = "*"
  zone_name           = azurerm_private_dns_zone.this[each.key].name
  resource_group_name = var.resource_group_name
  ttl                 = 300
  records             = [azurerm_container_app_environment.this[each.key].static_ip_address]
  tags                = var.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "this" {
  for_each = local.dns_links

  name                  = "${var.name}-${basename(each.value.network)}"
  resource_group_name   = var.resource_group_name
  private_dns_zone_name = azurerm_private_dns_zone.this[each.value.region].name
  virtual_network_id    = each.value.network
  registration_enabled  = false
  tags                  = var.tags
}
