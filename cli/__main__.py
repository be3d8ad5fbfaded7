"""``python -m cli`` is ``aura``."""

import sys

from cli import main

sys.exit(main())
