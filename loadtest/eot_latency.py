"""``python -m loadtest.eot_latency``: see ``earshot.loadtest.eot_latency``."""

import sys

from earshot.loadtest.eot_latency import main

if __name__ == "__main__":
    sys.exit(main())
