"""``python -m scandx``: the command line."""

import sys

from scandx.cli import main

sys.exit(main())
