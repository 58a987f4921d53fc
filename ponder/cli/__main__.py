"""``python -m ponder.cli``: the same as ``ponder``."""

import sys

from ponder.cli.main import main

sys.exit(main())
