"""`python -m ratethrottle`: the `ratethrottle` command."""

import sys

from .cli import main

sys.exit(main())
