"""End-to-end tests: regfront driven by real containerd, skopeo and registry:2 (``-m e2e``)."""
