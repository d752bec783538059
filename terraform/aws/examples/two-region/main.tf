# regfront in two AWS regions: the primary bucket and sync worker in one, a replica bucket in
# the other, and a gateway in each reading its own region's copy first.

provider "aws" {
  region = var.primary_region
}

provider "aws" {
  alias  = "secondary"
  region = var.secondary_region
}

module "regfront" {
  source = "../.."

  bucket_name              = var.bucket_name
  replication_time_control = true
  replicas = {
    (var.secondary_region) = { bucket_arn = module.gateway_secondary.replica_bucket_arn }
  }

  config          = local.config
  sync_image      = var.images[var.primary_region]
  vpc_id          = var.networks[var.primary_region].vpc_id
  sync_subnet_ids = var.networks[var.primary_region].subnet_ids
  sync_secrets    = var.sync_secrets
  tags            = var.tags
}

module "gateway_primary" {
  source = "../../modules/region"

  primary_bucket_arn    = module.regfront.bucket_arn
  primary_bucket_name   = module.regfront.bucket_id
  primary_bucket_region = module.regfront.bucket_region
  create_replica_bucket = false

  image               = var.images[var.primary_region]
  config              = local.config
  vpc_id              = var.networks[var.primary_region].vpc_id
  subnet_ids          = var.networks[var.primary_region].subnet_ids
  allowed_cidr_blocks = var.networks[var.primary_region].allowed_cidr_blocks
  tags                = var.tags

  s3_endpoint_vpcs = {
    main = {
      vpc_id          = var.networks[var.primary_region].vpc_id
      route_table_ids = var.networks[var.primary_region].route_table_ids
    }
  }
}

module "gateway_secondary" {
  source = "../../modules/region"
  providers = {
    aws = aws.secondary
  }

  primary_bucket_arn    = module.regfront.bucket_arn
  primary_bucket_name   = module.regfront.bucket_id
  primary_bucket_region = module.regfront.bucket_region
  create_replica_bucket = true

  gateway_type        = var.secondary_gateway_type
  image               = var.images[var.secondary_region]
  config              = local.config
  vpc_id              = var.networks[var.secondary_region].vpc_id
  subnet_ids          = var.networks[var.secondary_region].subnet_ids
  allowed_cidr_blocks = var.networks[var.secondary_region].allowed_cidr_blocks
  tags                = var.tags

  s3_endpoint_vpcs = {
    main = {
      vpc_id          = var.networks[var.secondary_region].vpc_id
      route_table_ids = var.networks[var.secondary_region].route_table_ids
    }
  }
}
