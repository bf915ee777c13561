"""``--scheduler`` and ``--workers``: where a batch command runs (this machine or a cluster).

The flags only carry what the user typed; :class:`~cytoreview.workflows.executors.ExecutorSpec`
applies the one rule (flag, else ``$CYTOREVIEW_SCHEDULER``, else the default) for the command
line and the workbench alike.
"""

from __future__ import annotations

import argparse

from cytoreview.defaults import COMPUTE
from cytoreview.settings import SCHEDULER_ENV
from cytoreview.workflows.executors import IN_PROCESS, LOCAL_CLUSTER, ExecutorSpec

__all__ = ["add_compute_flags", "compute_spec"]


def add_compute_flags(parser: argparse.ArgumentParser) -> None:
    """Add the ``--scheduler`` and ``--workers`` flags of a batch command."""
    group = parser.add_argument_group("where it runs (Dask)")
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help=f"a Dask scheduler to run on (tcp://host:8786), '{LOCAL_CLUSTER}' (a LocalCluster "
        f"of worker processes here) or '{IN_PROCESS}' (this process); default ${SCHEDULER_ENV}, "
        f"else a LocalCluster for {COMPUTE.min_cluster_items} images or more on "
        f"{COMPUTE.min_cluster_cores}+ cores, this process otherwise",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes of the LocalCluster (default: one per CPU core, one per GPU)",
    )


def compute_spec(args: argparse.Namespace) -> ExecutorSpec:
    """The executor spec the flags describe (not yet resolved against the environment)."""
    return ExecutorSpec(scheduler=args.scheduler, workers=args.workers)
