"""The Dask ``LocalCluster`` every command starts when no scheduler address is given."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

__all__ = ["local_cluster", "use_task_threads"]

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def local_cluster(n_workers: int | None, *, resources: dict[str, float] | None = None, quiet: bool = True) -> Any:
    """Worker processes with one task thread each and an equal share of the cores for torch / OpenMP, no dashboard.

    Dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which hands freed memory back to the system at once and
    fixes glibc's mmap threshold: every large temporary tensor is then mapped and page-faulted anew. SIGMA's template
    sampling ran 3x slower (2.96 s instead of 0.92 s per SR on 2 cores) and training ~1.7x slower; the workers keep
    the allocator's defaults. Dask also pins OpenMP / MKL / OpenBLAS to one thread, which leaves cores idle when
    there are fewer workers than cores; each worker gets ``cores // n_workers`` of them instead (read back by
    :func:`use_task_threads`).
    """
    import dask
    from distributed import LocalCluster

    n = max(1, int(n_workers or os.cpu_count() or 1))
    ours: dict[str, str | None] = {k: str(max(1, (os.cpu_count() or 1) // n)) for k in _THREAD_VARS}
    ours["MALLOC_TRIM_THRESHOLD_"] = None
    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items() if k not in ours}
    environ.update({k: v for k, v in ours.items() if v is not None})
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), _environ(ours):
        return LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.ERROR if quiet else logging.WARNING, resources=resources,
        )


@contextlib.contextmanager
def _environ(values: dict[str, str | None]) -> Iterator[None]:
    """This process's environment with ``values`` (``None``: unset) inside, restored after. A nanny takes its
    pre-spawn variables from this environment before Dask's config, and writes them into it when it spawns a worker,
    so that an earlier cluster's settings would otherwise win."""
    old = {k: os.environ.get(k) for k in values}

    def put(items: dict[str, str | None]) -> None:
        for k, v in items.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    put(values)
    try:
        yield
    finally:
        put(old)


def use_task_threads() -> None:
    """Give torch the threads a task in this process may use: in a Dask worker the larger of its task threads and its
    ``OMP_NUM_THREADS`` (the core share :func:`local_cluster` gives), outside Dask one. sklearn is imported first, so
    that its import is not timed inside the first task."""
    import sklearn.ensemble  # noqa: F401
    import torch

    try:
        from distributed import get_worker

        threads = max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        threads = 1
    else:
        try:
            threads = max(threads, int(os.environ.get("OMP_NUM_THREADS", 1)))
        except ValueError:  # an OpenMP list such as "4,2": keep the task threads
            pass
    torch.set_num_threads(threads)
