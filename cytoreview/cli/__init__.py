"""The command line: thin argparse/rich shells over :mod:`cytoreview.workflows`."""
