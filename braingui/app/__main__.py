"""``python -m braingui`` = the ``braingui`` command."""

import sys

from braingui.app.cli import main

sys.exit(main())
