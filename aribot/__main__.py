"""``python -m aribot`` runs the same command line as ``aribot``."""

import sys

from aribot.core.cli import main

sys.exit(main())
