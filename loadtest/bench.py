"""``python -m loadtest.bench``: see ``earshot.loadtest.bench``."""

import sys

from earshot.loadtest.bench import main

if __name__ == "__main__":
    sys.exit(main())
