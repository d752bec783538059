"""The ``regfront`` command: the composition root, the only package that imports gateway, sync
and node alike. It reads the config once and builds each of them from it."""
