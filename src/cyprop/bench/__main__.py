"""``python -m cyprop.bench``: the same as ``cyprop bench``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m cyprop.bench"))
