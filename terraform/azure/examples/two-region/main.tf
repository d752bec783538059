# regfront in two Azure regions: the primary storage account, the sync job and a gateway in
# one; a replica account (object replication) and a gateway in the other, each gateway reading
# its own region's account first.

provider "azurerm" {
  features {}
  # The accounts allow Entra ID only (shared keys off): the provider must not use keys either.
  storage_use_azuread = true
}

module "regfront" {
  source = "../.."

  resource_group_name  = var.resource_group_name
  location             = var.primary_region
  storage_account_name = var.storage_account_name

  regions = {
    (var.primary_region) = {
      image                    = var.images[var.primary_region]
      infrastructure_subnet_id = var.networks[var.primary_region].infrastructure_subnet_id
      dns_virtual_network_ids  = var.networks[var.primary_region].node_virtual_network_ids
    }
    (var.secondary_region) = {
      image                        = var.images[var.secondary_region]
      infrastructure_subnet_id     = var.networks[var.secondary_region].infrastructure_subnet_id
      dns_virtual_network_ids      = var.networks[var.secondary_region].node_virtual_network_ids
      replica_storage_account_name = var.replica_storage_account_name
    }
  }
  acr_ids = var.acr_ids
  config  = local.config

  sync_image   = var.images[var.primary_region]
  sync_secrets = var.sync_secrets
  key_vault_id = var.key_vault_id
  tags         = var.tags
}
