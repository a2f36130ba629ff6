"""``python -m loadtest.capacity``, the same as ``earshot loadtest``: see
``earshot.loadtest.capacity``."""

import sys

from earshot.loadtest.capacity import main

if __name__ == "__main__":
    sys.exit(main())
