"""``python -m zofo.bench``: a memory child or a drift party when asked for one, else ``zofo bench``."""

import sys

from zofo.bench import main

if __name__ == "__main__":
    sys.exit(main())
