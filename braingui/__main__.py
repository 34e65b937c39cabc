"""``python -m braingui`` = the ``braingui`` command."""

import sys

from braingui.cli import main

sys.exit(main())
