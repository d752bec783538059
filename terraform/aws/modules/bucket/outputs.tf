output "bucket_id" {
  description = "Name of the bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the bucket, once versioning is on (a replication rule may point at it)."
  value       = aws_s3_bucket.this.arn

  depends_on = [aws_s3_bucket_versioning.this]
}

output "bucket_region" {
  description = "Region of the bucket."
  value       = aws_s3_bucket.this.region
}
