"""Dask clusters on batch systems and analysis facilities (dask-jobqueue), for users who outgrow one machine.

Workers run one task thread each (as the local cluster's), and GPU jobs declare the Dask worker resource ``GPU``
that searches on CUDA ask for. ``anomalyhunt search --scheduler ADDRESS`` and ``process --executor dask
--scheduler ADDRESS`` then use it; OUT must be on a filesystem every job can write.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

SYSTEMS = ("slurm", "htcondor")


def batch_cluster(
    system: str = "slurm", *, cores: int = 4, memory: str = "16GB", gpus: int = 0, walltime: str = "04:00:00",
    **kwargs: Any,
) -> Any:
    """A dask-jobqueue cluster (not yet scaled: call ``cluster.scale(jobs=N)`` to submit, ``cluster.job_script()``
    to read what would be submitted). ``gpus`` > 0 asks the batch system for GPUs and declares ``GPU=gpus`` to Dask.
    ``kwargs`` go to the dask-jobqueue class (queue, account, job_extra_directives, ...)."""
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError("batch clusters need dask-jobqueue: pip install 'anomalyhunt[batch]'") from None
    if system not in SYSTEMS:
        raise ConfigError(f"unknown batch system {system!r}; available: {', '.join(SYSTEMS)}")
    worker_args = list(kwargs.pop("worker_extra_args", [])) + ["--nthreads", "1"]
    extra = kwargs.pop("job_extra_directives", [])
    if gpus:
        worker_args += ["--resources", f"GPU={gpus}"]
    if system == "slurm":
        if gpus:
            extra = [*extra, f"--gres=gpu:{gpus}"]
        return dask_jobqueue.SLURMCluster(cores=cores, processes=1, memory=memory, walltime=walltime,
                                          job_extra_directives=extra, worker_extra_args=worker_args, **kwargs)
    extra = dict(extra or {})
    if gpus:
        extra["request_gpus"] = str(gpus)
    return dask_jobqueue.HTCondorCluster(cores=cores, processes=1, memory=memory, disk=kwargs.pop("disk", "10GB"),
                                         job_extra_directives=extra, worker_extra_args=worker_args, **kwargs)
