"""``python -m metarl`` is the ``metarl`` command."""

import sys

from metarl.cli import main

if __name__ == "__main__":
    sys.exit(main())
