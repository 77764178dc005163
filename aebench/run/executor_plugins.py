"""The built-in executors, registered through the hook a third party's Ray or SLURM executor uses.

The factories import ``aebench.run.executors`` (and so the trial's machinery) only when called:
loading plugins for ``aebench list`` must stay cheap, and it reads just their signatures.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from aebench.contract.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    from aebench.run.executors import DaskExecutor, LocalExecutor


def local() -> LocalExecutor:
    """Every trial on this machine, one after another ([suite] isolate: each in a child process)."""
    from aebench.run.executors import LocalExecutor

    return LocalExecutor()


def isolated() -> LocalExecutor:
    """Each trial in a child process of its own, one after another, whatever [suite] isolate is."""
    from aebench.run.executors import LocalExecutor

    return LocalExecutor(isolate=True)


def dask(
    workers: Annotated[int, Field(ge=1)] | None = None, scheduler: str | None = None
) -> DaskExecutor:
    """Trials as tasks of a Dask cluster: --workers N on this machine, or --scheduler ADDRESS."""
    from aebench.run.executors import DaskExecutor

    if workers is None and scheduler is None:  # a local cluster, a worker per core
        workers = os.cpu_count() or 1
    return DaskExecutor(workers=workers, scheduler=scheduler)


@hookimpl
def aebench_register_executors(register: Register) -> None:
    register("local", local)
    register("isolated", isolated)
    register("dask", dask)
