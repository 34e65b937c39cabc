"""The frozen app's entry point: the ``braingui`` command (:func:`braingui.app.cli.main`)."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen child process must not start the app again
    from braingui.app.cli import main

    sys.exit(main())
