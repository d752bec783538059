variable "name" {
  description = "Name of the bucket."
  type        = string
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete the bucket with the images in it."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days an overwritten or deleted object's old version is kept (versioning is on: replication needs it)."
  type        = number
  default     = 7
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which an unfinished multipart upload (a killed sync or pull-through) is aborted and its parts deleted."
  type        = number
  default     = 1
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
