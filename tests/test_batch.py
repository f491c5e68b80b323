"""The batch-system recipe: job scripts are built (never submitted) with the GPU resource declared."""

from __future__ import annotations

import pytest

from anomalyhunt.batch import batch_cluster

pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is the optional 'batch' extra")


@pytest.mark.parametrize("system, gpu_line", [("slurm", "#SBATCH --gres=gpu:1"), ("htcondor", "request_gpus = 1")])
def test_gpu_job_script_declares_the_gpu_resource(system, gpu_line):
    cluster = batch_cluster(system, cores=4, memory="8GB", gpus=1)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "--resources GPU=1" in script and "--nthreads 1" in script
    assert gpu_line in script


def test_cpu_job_script_has_no_gpu():
    cluster = batch_cluster("slurm", cores=2, memory="4GB")
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "GPU" not in script and "gres" not in script and "--nthreads 1" in script
