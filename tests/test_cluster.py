"""A real Dask cluster: a scheduler and two worker processes on loopback (one declaring a GPU resource), reached
by address. `process` and `search` give the same results there as locally (timings and host names exempt)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from anomalyhunt.cli import main as cli
from anomalyhunt.features import load_feature_table
from anomalyhunt.processors import DijetProcessor
from conftest import write_toy_table

REPO = Path(__file__).resolve().parents[1]
PFNANO = REPO / "tests" / "data" / "cms-nanoaod" / "pfnano.root"
#: Keys of results.json that may differ between executions of the same run.
EXEMPT = {"seconds_train", "seconds_fit", "seconds_sample", "seconds_template", "seconds_total",
          "seconds_template_auc", "seconds_fit_model", "config"}  # fmt: skip


@contextlib.contextmanager
def dask_cluster(tmp: Path):
    """A scheduler and two worker processes (one task thread each; the second declares GPU=1) on loopback, started
    as separate processes from the command line; yields the scheduler's address."""
    sched_file = tmp / "scheduler.json"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                               str(sched_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        worker = [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(sched_file),
                  "--nthreads", "1", "--no-dashboard", "--no-nanny"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        for extra in ([], ["--resources", "GPU=1"]):
            procs.append(subprocess.Popen([*worker, *extra], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))  # fmt: skip
        from distributed import Client

        address = json.loads(sched_file.read_text())["address"]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        # Workers first, each closed while the scheduler still answers (terminated together, a worker waited 20 s
        # for a scheduler that was gone), then the scheduler.
        for p in procs[::-1]:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:  # a worker still closing its connections: no need to wait on it
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("cluster")) as address:
        yield address


def test_process_on_a_cluster_by_address_equals_the_local_run(cluster, tmp_path):
    shutil.copy(PFNANO, tmp_path / "a.root")
    shutil.copy(PFNANO, tmp_path / "b.root")
    (tmp_path / "d.yaml").write_text("datasets:\n  cms: {format: pfnanoaod, files: [a.root, b.root]}\n")
    common = ["process", str(tmp_path / "d.yaml"), "--chunksize", "4", "--no-progress"]
    assert cli([*common, "--out", str(tmp_path / "local")]) == 0
    assert cli([*common, "--executor", "dask", "--scheduler", cluster, "--out", str(tmp_path / "remote")]) == 0
    a = load_feature_table(tmp_path / "local" / "cms").sort_values(["source", "event"]).reset_index(drop=True)
    b = load_feature_table(tmp_path / "remote" / "cms").sort_values(["source", "event"]).reset_index(drop=True)
    assert len(a) == 20
    pd.testing.assert_frame_equal(a, b)
    ma = json.loads((tmp_path / "local" / "cms" / "manifest.json").read_text())
    mb = json.loads((tmp_path / "remote" / "cms" / "manifest.json").read_text())
    assert ma["status"] == mb["status"] == "complete" and ma["rows"] == mb["rows"] and ma["cutflow"] == mb["cutflow"]


def test_search_on_a_cluster_by_address_equals_the_local_run(cluster, tmp_path):
    write_toy_table(tmp_path / "toy.parquet", seed=1)
    common = ["search", "--features", str(tmp_path / "toy.parquet"), "--method", "idealized", "--method", "cwola",
              "--sr", "3.3:3.7", "--signal-events", "150", "--seeds", "2", "--quiet", "--no-plots"]  # fmt: skip
    assert cli([*common, "--scheduler", "sync", "--out", str(tmp_path / "local")]) == 0
    assert cli([*common, "--scheduler", cluster, "--out", str(tmp_path / "remote")]) == 0
    local = json.loads((tmp_path / "local" / "results.json").read_text())["runs"]
    remote = json.loads((tmp_path / "remote" / "results.json").read_text())["runs"]
    assert len(local) == len(remote) == 4
    for a, b in zip(local, remote):
        assert {k: v for k, v in a.items() if k not in EXEMPT} == {k: v for k, v in b.items() if k not in EXEMPT}
    assert min(r["auc"] for r in local if r["method"] == "idealized") > 0.6


class DiesOnce(DijetProcessor):
    """Exits the worker process it runs in at its second chunk there, once per run: the first process to create
    ``marker`` dies (deterministic: a chunk count, not a sleep)."""

    def __init__(self, out_dir: Path, marker: Path) -> None:
        super().__init__(out_dir)
        self.marker = str(marker)

    def process(self, events):
        # Each task gets its own copy of the processor: count this process's chunks in a file of its own.
        count = Path(f"{self.marker}.{os.getpid()}")
        calls = int(count.read_text()) + 1 if count.exists() else 1
        count.write_text(str(calls))
        if calls >= 2:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return super().process(events)


def test_a_worker_killed_while_processing_changes_nothing(tmp_path):
    """A worker dies in the middle of the run; Dask reruns what it held on the other worker: the same rows, the
    same cut flow, a complete manifest."""
    import cloudpickle
    from coffea import processor
    from coffea.nanoevents import PFNanoAODSchema
    from distributed import Client

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    files = {}
    for name in ("a.root", "b.root"):
        shutil.copy(PFNANO, tmp_path / name)
        files[str(tmp_path / name)] = "Events"
    fileset = {"cms": {"files": files, "metadata": {"format": "pfnanoaod"}}}
    local = processor.Runner(executor=processor.IterativeExecutor(), schema=PFNanoAODSchema, chunksize=2,
                             metadata_cache={})(fileset, processor_instance=DijetProcessor(tmp_path / "local"))
    with dask_cluster(tmp_path) as address, Client(address) as client:
        runner = processor.Runner(executor=processor.DaskExecutor(client=client, status=False),
                                  schema=PFNanoAODSchema, chunksize=2, metadata_cache={})  # fmt: skip
        remote = runner(fileset, processor_instance=DiesOnce(tmp_path / "remote", tmp_path / "died"))
        assert (tmp_path / "died").exists()  # a worker did die
        assert len(client.scheduler_info()["workers"]) == 1
    assert remote["cutflow"] == local["cutflow"] and remote["cutflow"]["cms"]["input"] == 20
    a = load_feature_table(tmp_path / "local" / "cms").sort_values(["source", "event"]).reset_index(drop=True)
    b = load_feature_table(tmp_path / "remote" / "cms").sort_values(["source", "event"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert json.loads((tmp_path / "remote" / "cms" / "manifest.json").read_text())["total_rows"] == 20


def train_and_die_once(payload: tuple[list[dict], str, int]) -> list[dict]:
    """Task: the search task itself (:func:`~anomalyhunt.analysis.search._run_group`), whose worker exits at the
    ``after``-th training batch (backward pass) of the first process to create ``marker`` (a batch count, not a
    sleep)."""
    import torch

    from anomalyhunt.analysis.search import _run_group

    configs, marker, after = payload
    backward, calls = torch.Tensor.backward, [0]

    def counting(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == after:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return backward(self, *args, **kwargs)

    torch.Tensor.backward = counting
    try:
        return _run_group(configs)
    finally:
        torch.Tensor.backward = backward


def test_a_worker_killed_while_training_changes_nothing(tmp_path):
    """A worker dies in the middle of training CATHODE's flow (its 5th batch); Dask reruns the search on the other
    worker: the same results as an uninterrupted run, timings exempt."""
    import cloudpickle

    from anomalyhunt.analysis.search import SearchConfig, _run_group
    from anomalyhunt.tasks import run_tasks

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    write_toy_table(tmp_path / "toy.parquet", seed=2)
    cfg = SearchConfig(method="cathode", background=(str(tmp_path / "toy.parquet"),), n_signal=150, folds=3, seed=1,
                       classifier_config={"n_ensemble": 2}, generator_config={"epochs": 3, "batch_size": 256})
    configs = [cfg.to_dict()]
    local = _run_group(configs)
    with dask_cluster(tmp_path) as address:
        (remote,) = run_tasks(train_and_die_once, [(configs, str(tmp_path / "died"), 5)], scheduler=address)
        from distributed import Client

        with Client(address) as client:
            assert len(client.scheduler_info()["workers"]) == 1  # one worker did die
    assert (tmp_path / "died").exists()
    assert "failed" not in local[0] and local[0]["auc"] > 0.6
    assert {k: v for k, v in local[0].items() if k not in EXEMPT} == {k: v for k, v in remote[0].items()
                                                                       if k not in EXEMPT}  # fmt: skip
