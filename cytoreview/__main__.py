"""``python -m cytoreview`` runs the command line."""

import sys

from cytoreview.launcher import main

# Guarded: Dask's LocalCluster starts its worker processes by spawning, which imports the main
# module again in each of them.
if __name__ == "__main__":
    sys.exit(main())
