"""``python -m pixellib ...``: the same as the ``pixellib`` command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
