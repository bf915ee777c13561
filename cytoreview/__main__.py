"""``python -m cytoreview`` runs the command line."""

import sys

from cytoreview.cli.main import main

sys.exit(main())
