output "storage_account_name" {
  description = "Name of the primary storage account."
  value       = azurerm_storage_account.this["primary"].name
}

output "storage_account_id" {
  description = "Resource ID of the primary storage account."
  value       = azurerm_storage_account.this["primary"].id
}

output "replica_storage_account_names" {
  description = "Names of the replica storage accounts, by region."
  value       = { for region, account in azurerm_storage_account.this : region => account.name if region != "primary" }
}

output "container_name" {
  description = "Name of the blob container in every account."
  value       = var.container_name
}

output "store_url" {
  description = "The primary store as regfront names it (the last `storage:` entry, the one sync writes)."
  value       = local.store_urls["primary"]
}

output "store_urls" {
  description = "Each region's gateway stores in the order it reads them (its `storage:`), by region."
  value       = local.region_store_urls
}

output "config_yaml" {
  description = "The regfront config each region's gateway runs with, by region (the sync job's has the primary store only)."
  value       = local.region_config_yaml
}

output "gateway_urls" {
  description = "Each region's gateway URL, by region: the node agent's `gateway` setting for that region's clusters."
  value       = { for region, app in azurerm_container_app.this : region => "https://${app.ingress[0].fqdn}" }
}

output "gateway_ip_addresses" {
  description = "Private IP of each region's Container Apps environment (its internal load balancer), by region."
  value       = { for region, environment in azurerm_container_app_environment.this : region => environment.static_ip_address }
}

output "private_dns_zone_names" {
  description = "The private DNS zone of each region's environment (its default domain), by region: link more networks to it for more nodes."
  value       = { for region, zone in azurerm_private_dns_zone.this : region => zone.name }
}

output "gateway_identity_client_id" {
  description = "Client ID of the gateway's managed identity (its AZURE_CLIENT_ID)."
  value       = azurerm_user_assigned_identity.gateway.client_id
}

output "gateway_identity_principal_id" {
  description = "Principal ID of the gateway's managed identity, for further role assignments."
  value       = azurerm_user_assigned_identity.gateway.principal_id
}

output "sync_identity_principal_id" {
  description = "Principal ID of the sync job's managed identity; null when sync is disabled."
  value       = one(azurerm_user_assigned_identity.sync[*].principal_id)
}

output "sync_job_name" {
  description = "Name of the sync job (`az containerapp job start` it once after the first apply); null when sync is disabled."
  value       = one(azurerm_container_app_job.this[*].name)
}

output "log_analytics_workspace_id" {
  description = "Resource ID of the Log Analytics workspace the gateways and the sync job log to."
  value       = azurerm_log_analytics_workspace.this.id
}
