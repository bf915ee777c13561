"""``python -m cytoreview`` runs the command line."""

import sys

from cytoreview.launcher import main

sys.exit(main())
