"""``python -m regfront``: the same command as the ``regfront`` script."""

from regfront.cli import main

main()
