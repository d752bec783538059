"""The regfront gateway: the OCI distribution pull API served from object storage."""
