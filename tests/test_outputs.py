"""Outputs that cannot collide or go stale: unique chunk names, the run manifest, re-runs, duplicates refused."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomalyhunt.cli import main as cli
from anomalyhunt.datasets import Dataset, load_datasets
from anomalyhunt.errors import ConfigError, InputError
from anomalyhunt.features import load_feature_table
from anomalyhunt.io.manifest import MANIFEST, begin_dataset
from anomalyhunt.processors import DijetProcessor, run_process
from conftest import write_toy_table

REPO = Path(__file__).resolve().parents[1]
PFNANO = REPO / "tests" / "data" / "cms-nanoaod" / "pfnano.root"  # 10 events, all with two jets


@pytest.fixture()
def three_files(tmp_path: Path) -> list[str]:
    """Three copies of one CMS file: two share the name pfnano.root, one has dots in its stem."""
    paths = [tmp_path / "r1" / "pfnano.root", tmp_path / "r2" / "pfnano.root", tmp_path / "run.part1.root"]
    for p in paths:
        p.parent.mkdir(exist_ok=True)
        shutil.copy(PFNANO, p)
    return [str(p) for p in paths]


def _rows_on_disk(dataset_dir: Path) -> int:
    return sum(len(pd.read_parquet(f)) for f in (dataset_dir / "features").glob("*.parquet"))


def test_files_sharing_a_name_do_not_overwrite_each_other_and_reruns_replace(tmp_path, three_files):
    out = tmp_path / "out"
    res = run_process({"d": Dataset("d", "pfnanoaod", three_files)}, out, chunksize=10, status=False)
    assert res["cutflow"]["d"]["input"] == 30 == res["cutflow"]["d"]["passed"]
    assert _rows_on_disk(out / "d") == 30
    table = load_feature_table(out / "d")
    assert len(table) == 30 and table["source"].nunique() == 3
    manifest = json.loads((out / "d" / MANIFEST).read_text())
    assert manifest["status"] == "complete" and manifest["total_rows"] == 30
    assert sorted(manifest["inputs"].values()) == [10, 10, 10] and len(manifest["chunks"]["features"]) == 3

    # Another chunk size into the same OUT: the old chunks go, the counts stay exact. (Every chunk opens its file
    # anew, reading the PFNano tree's metadata: 5 events a chunk keep it to 6 chunks.)
    res = run_process({"d": Dataset("d", "pfnanoaod", three_files)}, out, chunksize=5, status=False)
    files = list((out / "d" / "features").glob("*.parquet"))
    assert len(files) > 3 and _rows_on_disk(out / "d") == 30 == res["cutflow"]["d"]["passed"]
    assert len(load_feature_table(out / "d")) == 30


def test_rerun_of_one_dataset_keeps_the_others(tmp_path, three_files):
    out = tmp_path / "out"
    run_process({"a": Dataset("a", "pfnanoaod", three_files[:1]), "b": Dataset("b", "pfnanoaod", three_files[1:])},
                out, status=False)  # fmt: skip
    run_process({"a": Dataset("a", "pfnanoaod", three_files[:1])}, out, chunksize=5, status=False)
    table = load_feature_table(out)
    assert len(table) == 30
    assert (table["source"].astype(str).str.startswith("b/")).sum() == 20


def test_runner_without_our_metadata_writes_unique_chunks_and_a_manifest(tmp_path, three_files):
    """A user's own coffea Runner (no dataset metadata): postprocess writes the manifest."""
    from coffea import processor
    from coffea.nanoevents import PFNanoAODSchema

    out = tmp_path / "out"
    runner = processor.Runner(executor=processor.IterativeExecutor(), schema=PFNanoAODSchema, chunksize=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc = runner({"data": {"files": {f: "Events" for f in three_files}}}, processor_instance=DijetProcessor(out))
    assert acc["cutflow"]["data"]["input"] == 30
    assert len(list((out / "data" / "features").glob("*.parquet"))) == 6
    assert len(load_feature_table(out / "data")) == 30


def test_partial_and_mixed_outputs_are_refused_unless_allowed(tmp_path, three_files):
    out = tmp_path / "out"
    run_process({"d": Dataset("d", "pfnanoaod", three_files[:2])}, out, chunksize=5, status=False)
    # A stray chunk from elsewhere (e.g. copied in by hand): mixed.
    stray = out / "d" / "features" / "other-0123456789_0-5.parquet"
    shutil.copy(next((out / "d" / "features").glob("*.parquet")), stray)
    with pytest.raises(InputError, match=r"/d: mixed output: 1 chunk file\(s\) not from the run"):
        load_feature_table(out / "d")
    stray.unlink()
    assert len(load_feature_table(out / "d")) == 20

    # A run that started and never finished (Ctrl-C, an error, a killed job): the partial mark and one chunk.
    chunk = next((out / "d" / "features").glob("*.parquet"))
    saved = chunk.read_bytes()
    begin_dataset(out / "d", three_files[:1], {})
    assert not chunk.exists()  # the earlier run's outputs are gone before anything is written
    chunk.write_bytes(saved)
    with pytest.raises(InputError, match="partial output.*--allow-partial"):
        load_feature_table(out / "d")
    with pytest.warns(UserWarning, match="reading 5 rows despite: partial output"):
        table = load_feature_table(out / "d", allow_partial=True)
    assert len(table) == 5 and table.attrs["inputs"][0]["status"] == "partial"


def test_a_chunk_cut_off_by_a_killed_run_is_one_line(tmp_path, three_files):
    """A chunk file left empty by a run killed while writing it (SIGKILL mid-write) is named in one line, not a
    pyarrow traceback; read anyway, it is the file that stops the read."""
    out = tmp_path / "out"
    run_process({"d": Dataset("d", "pfnanoaod", three_files[:2])}, out, chunksize=5, status=False)
    chunk = sorted((out / "d" / "features").glob("*.parquet"))[1]
    chunk.write_bytes(b"")
    with pytest.raises(InputError, match=rf"1 unreadable chunk file\(s\), e.g. {chunk.name}"):
        load_feature_table(out / "d")
    with pytest.warns(UserWarning), pytest.raises(InputError, match=f"{chunk.name}: not a readable Parquet file"):
        load_feature_table(out / "d", allow_partial=True)


def test_duplicate_inputs_are_errors(tmp_path, three_files):
    base = Path(three_files[0]).parent.parent
    twice = base / "twice.yaml"
    twice.write_text("datasets:\n  d: {format: pfnanoaod, files: [r1/pfnano.root, 'r1/*.root']}\n")
    with pytest.raises(InputError, match=r"r1/pfnano.root: listed twice \(dataset 'd'"):
        run_process(load_datasets(twice), tmp_path / "o", status=False)
    across = base / "across.yaml"
    across.write_text("datasets:\n  a: {format: pfnanoaod, files: [r1/pfnano.root]}\n"
                      "  b: {format: pfnanoaod, files: [r1/pfnano.root]}\n")  # fmt: skip
    with pytest.raises(InputError, match="listed twice.*dataset 'b' and dataset 'a'"):
        run_process(load_datasets(across), tmp_path / "o", status=False)
    defined_twice = base / "defined_twice.yaml"
    defined_twice.write_text("datasets:\n  a: {format: pfnanoaod, files: [r1/pfnano.root]}\n"
                             "  a: {format: pfnanoaod, files: [r2/pfnano.root]}\n")  # fmt: skip
    with pytest.raises(ConfigError, match="line 3: key 'a' defined twice"):
        load_datasets(defined_twice)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.parquet"))


def test_copies_of_one_file_are_caught_by_the_experiments_event_ids(tmp_path, capsys):
    """The same CMS events under two file names pass the file check (other paths) but carry the same (run,
    luminosityBlock, event): the table keeps them and `hunt` refuses it in one line."""
    src = REPO / "tests" / "data" / "cms-nanoaod" / "pfnano.root"
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(src, tmp_path / d / "run.root")
    (tmp_path / "d.yaml").write_text(f"datasets:\n  d: {{format: pfnanoaod, files: ['{tmp_path}/*/run.root']}}\n")
    run_process(load_datasets(tmp_path / "d.yaml"), tmp_path / "o", status=False)
    table = load_feature_table(tmp_path / "o" / "d")
    assert {"run", "luminosityBlock", "event_number"} <= set(table.columns) and len(table) == 20
    capsys.readouterr()
    assert cli(["hunt", "--features", str(tmp_path / "o" / "d"), "--sr", "3.3:3.7", "--out", str(tmp_path / "h")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "10 events appear twice" in err[0] and "event_number" in err[0], err


def test_weighted_events_are_refused_in_one_line(tmp_path, capsys):
    """A table whose events carry generator weights (here 1 or 2): hunt counts events, so it refuses them."""
    path = write_toy_table(tmp_path / "toy.parquet", 4000, resonance=False)
    table = pd.read_parquet(path)
    table["gen_weight"] = 1.0 + (table.index % 2)
    table.to_parquet(path)
    assert cli(["hunt", "--features", str(path), "--sr", "3.3:3.7", "--out", str(tmp_path / "h")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "events carry generator weights (gen_weight 1 to 2)" in err[0], err
    table["gen_weight"] = np.where(table.index < 1000, 2.0, np.nan)  # one constant, beside unweighted events
    table.to_parquet(path)
    assert cli(["hunt", "--features", str(path), "--sr", "3.3:3.7", "--out", str(tmp_path / "h")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3000 of 4000 events have no gen_weight" in err[0], err


def test_search_refuses_the_same_events_twice(tmp_path, capsys):
    path = write_toy_table(tmp_path / "toy.parquet", 400, resonance=False)
    rc = cli(["search", "--features", str(path), "--features", str(path), "--method", "idealized", "--scheduler",
              "sync", "--out", str(tmp_path / "s"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "400 events appear twice" in err[0] and "toy.parquet" in err[0]
    assert not (tmp_path / "s" / "results.json").exists()


@pytest.mark.parametrize("signame", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_stopped_process_leaves_no_workers_and_a_partial_mark(lhco_dir, tmp_path, signame):
    """`process` stopped while its pool works: by SIGKILL (no chance to clean up), SIGTERM or Ctrl-C (SIGINT). No
    worker is alive 30 s later and the output says partial; SIGTERM and Ctrl-C end the command within 30 s with one
    line and exit status 143 / 130."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    # The 5,000 QCD events (20 chunks): with fewer (the 2,000-event signal file) the pool can finish every chunk
    # before the signal arrives on idle cores, and there is nothing left to interrupt.
    (tmp_path / "d.yaml").write_text("datasets:\n  qcd: {format: lhco-particles, files: "
                                     f"[{lhco_dir / 'rnd_qcd_seed1001.particles.h5'}]}}\n")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "anomalyhunt.cli", "process", str(tmp_path / "d.yaml"), "--out",
                             str(tmp_path / "out"), "--executor", "futures", "--workers", "2", "--chunksize", "250",
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "out" / "qcd" / "features").glob("*.parquet")):
        time.sleep(0.2)  # wait until the workers are writing chunks
    children = parent.children(recursive=True)
    assert children, "the pool never started"
    os.kill(proc.pid, getattr(signal, signame))
    rc = proc.wait(timeout=30)
    err = proc.stderr.read().strip().splitlines()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
    if signame != "SIGKILL":
        expected = {"SIGTERM": (143, "interrupted (SIGTERM)"), "SIGINT": (130, "interrupted (Ctrl-C)")}[signame]
        assert rc == expected[0] and len(err) == 1 and expected[1] in err[0], (rc, err)
    with pytest.raises(InputError, match="partial output"):
        load_feature_table(tmp_path / "out" / "qcd")


def test_sigterm_of_a_search_stops_its_dask_cluster(tmp_path):
    """SIGTERM of `search` while its local Dask cluster trains: its line, exit 143, no nanny or worker alive 30 s
    later, and no results.json (a re-run resumes from the task log)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    write_toy_table(tmp_path / "toy.parquet", 4000, seed=0)
    out = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "anomalyhunt.cli", "search", "--features", str(tmp_path / "toy.parquet"),
                             "--method", "cathode", "--sr", "3.3:3.7", "--sr", "3.5:3.9", "--workers", "2", "--quiet",
                             "--no-plots", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 120
    while time.time() < deadline and len(parent.children(recursive=True)) < 3:
        time.sleep(0.2)  # the scheduler's nannies and their workers
    time.sleep(1.0)
    children = parent.children(recursive=True)
    assert len(children) >= 2, "the cluster never started"
    os.kill(proc.pid, signal.SIGTERM)
    rc = proc.wait(timeout=30)
    err = proc.stderr.read().strip().splitlines()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
    # (a SIGTERM that lands while the cluster is still starting may add Dask's own startup messages after it)
    assert rc == 143 and any(line.startswith("anomalyhunt search: interrupted (SIGTERM)") for line in err), (rc, err)
    assert not (out / "results.json").exists()


def test_killed_driver_leaves_no_dask_workers():
    """SIGKILL of a process holding the local Dask cluster every command starts (search, hunt pseudo-experiments):
    its nannies, workers and resource tracker are gone 30 s later."""
    import os
    import signal
    import subprocess
    import sys

    import psutil

    code = ("from distributed import Client\nfrom anomalyhunt.local_cluster import local_cluster\n"
            "client = Client(local_cluster(2))\nprint('up', flush=True)\nimport time\ntime.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "up"
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2, "the cluster never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]


def test_interrupted_search_resumes_to_the_same_files(tmp_path, capsys):
    """A search stopped after its first run (the task log holds that run and a line torn by the kill; the second
    run's directory is half written) and then re-run: the first run is kept, the second recomputed, and every
    results.json equals an uninterrupted search's, file by file (timings exempt)."""
    write_toy_table(tmp_path / "toy.parquet", seed=0)

    def search(out):
        return cli(["search", "--features", str(tmp_path / "toy.parquet"), "--method", "idealized", "--sr", "3.3:3.7",
                    "--sr", "3.5:3.9", "--signal-events", "100", "--scheduler", "sync", "--quiet", "--no-plots",
                    "--out", str(out)])  # fmt: skip

    def contents(out):
        timing = re.compile(r'"seconds_[a-z_]+": [0-9.eE+-]+|"time": "[^"]*"')
        return {p.relative_to(out).as_posix(): timing.sub("", p.read_text().replace(str(out), "OUT"))
                for p in sorted(out.rglob("results.json"))}

    full, cut = tmp_path / "full", tmp_path / "cut"
    assert search(full) == 0
    assert search(cut) == 0
    log = cut / "tasks" / "tasks.jsonl"
    first, second = log.read_text().splitlines()
    log.write_text(first + "\n" + second[: len(second) // 2])  # killed while recording the second run
    run_dir = json.loads(second)["task"]
    (cut / run_dir / "results.json").write_text("{")  # and while writing its outputs
    capsys.readouterr()
    assert search(cut) == 0
    assert "resuming: 1 of 2 runs already finished" in capsys.readouterr().out
    assert len(contents(full)) == 3 and contents(cut) == contents(full)


def test_search_records_a_failing_sr_resumes_and_keeps_its_out_dir(tmp_path, capsys):
    """One SR that cannot run (no signal left to test) is recorded with its reason while the other finishes; a
    re-run keeps the finished run; a different search into the same OUT is refused; few test events are flagged."""
    write_toy_table(tmp_path / "toy.parquet", seed=0)
    args = ["search", "--features", str(tmp_path / "toy.parquet"), "--method", "idealized", "--sr", "3.3:3.7",
            "--sr", "5.9:6.0", "--signal-events", "100", "--scheduler", "sync", "--quiet", "--no-plots", "--out",
            str(tmp_path / "s")]  # fmt: skip
    assert cli(args) == 1  # not every run succeeded
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    assert [r["sr"] for r in res["runs"]] == [[3.3, 3.7]] and res["runs"][0]["auc"] > 0.6
    assert res["failed"][0]["sr"] == [5.9, 6.0] and "no signal events left for testing" in res["failed"][0]["failed"]
    before = (tmp_path / "s" / "idealized_sr3.3-3.7_n100_seed0" / "results.json").read_text()
    capsys.readouterr()
    assert cli(args) == 1
    assert "resuming: 1 of 2 runs already finished" in capsys.readouterr().out
    assert (tmp_path / "s" / "idealized_sr3.3-3.7_n100_seed0" / "results.json").read_text() == before
    assert cli([*args[:-2], "--seed", "3", "--out", str(tmp_path / "s")]) == 1
    assert "holds another search" in capsys.readouterr().err

    small = ["search", "--features", str(tmp_path / "toy.parquet"), "--method", "idealized", "--sr", "3.3:3.7",
             "--signal-events", "290", "--scheduler", "sync", "--quiet", "--no-plots", "--out", str(tmp_path / "f")]
    assert cli(small) == 0
    run = json.loads((tmp_path / "f" / "results.json").read_text())["runs"][0]
    assert run["n_test_signal"] < 20 and any("max SIC rests on" in w for w in run["warnings"])
