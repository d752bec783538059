################################################################################
# An S3 gateway endpoint in each VPC of this region that pulls: the nodes fetch the pre-signed
# blob URLs (and the gateway reads manifests) from this region's bucket over the endpoint, not
# through a NAT gateway, which would bill every byte of every layer (docs/deploy.md). Gateway
# endpoints have no hourly or per-GB charge. They reach buckets of this region only: a pull
# that falls back to the primary in another region still takes the NAT or internet route.
################################################################################

data "aws_vpc_endpoint_service" "s3" {
  count = var.s3_gateway_endpoint ? 1 : 0

  service      = "s3"
  service_type = "Gateway"

  lifecycle {
    precondition {
      condition     = length(var.s3_endpoint_vpcs) > 0
      error_message = "s3_gateway_endpoint is on: list the nodes' and the gateway's VPCs and route tables in s3_endpoint_vpcs, or set s3_gateway_endpoint = false (e.g. the VPCs already have an S3 endpoint)."
    }
  }
}

resource "aws_vpc_endpoint" "this" {
  for_each = var.s3_gateway_endpoint ? var.s3_endpoint_vpcs : {}

  vpc_id            = each.value.vpc_id
  service_name      = data.aws_vpc_endpoint_service.s3[0].service_name
  vpc_endpoint_type = "Gateway"
  route_table_ids   = each.value.route_table_ids
  # No endpoint policy: the endpoint also carries the nodes' other S3 traffic (ECR keeps image
  # layers in S3), which a policy naming regfront's buckets would cut off.
  tags = merge(var.tags, { Name = "${var.name}-s3-${each.key}" })
}
