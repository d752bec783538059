"""The node side: containerd's host configuration, where this node's kubelet pulls read it,
and the probe that proves they go through the gateway."""
