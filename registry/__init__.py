"""The registry itself: OCI vocabulary, digests, names, errors, bucket layout and stores.

Shared by the gateway and the sync worker; never imports an HTTP framework.
"""
