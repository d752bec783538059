"""Clients for upstream registries (Docker Hub, ghcr.io, quay.io, any distribution registry):
used by the sync worker to mirror, and by the gateway to check tag freshness and pull through.
"""
