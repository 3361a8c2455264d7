"""``python -m ferrolock``: same as the ``ferrolock`` console script."""

import sys

from ferrolock.cli import main

sys.exit(main())
