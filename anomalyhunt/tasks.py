"""One execution path for independent tasks: Dask (a local cluster, a cluster by address) or this process."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence


def _in_worker(fn: bytes, payload: Any) -> Any:
    import cloudpickle

    from .local_cluster import use_task_threads

    use_task_threads()
    return cloudpickle.loads(fn)(payload)


def run_tasks(
    fn: Any,
    payloads: Sequence[Any],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    gpu: Sequence[bool] | None = None,
    names: Sequence[str] | None = None,
    desc: str = "tasks",
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[fn(p) for p in payloads]`` as Dask tasks. ``fn`` travels with cloudpickle: by reference when the workers
    can import it, by value when its module is registered so (a notebook's or a test's function).

    ``scheduler``: ``None`` starts a :func:`~anomalyhunt.local_cluster.local_cluster` (``workers`` processes,
    default min(#tasks, #CPUs)); an address (``tcp://host:8786``) uses that cluster; ``"sync"`` runs in this
    process. Tasks flagged in ``gpu`` ask for the worker resource ``{"GPU": 1}`` (a local cluster then gives each
    worker one such resource, so GPU tasks share the local GPU one per worker). ``on_result(i, result)`` is called
    here as each task finishes (in completion order), so that a caller can record finished work before the rest is
    done: a run stopped anywhere keeps it.
    """
    payloads = list(payloads)
    if not payloads:
        return []
    gpu = list(gpu) if gpu is not None else [False] * len(payloads)
    if scheduler == "sync":
        it: Iterable[Any] = payloads
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(payloads, desc=desc, unit="task")
        out = []
        for i, p in enumerate(it):
            out.append(fn(p))
            if on_result is not None:
                on_result(i, out[-1])
        return out

    from distributed import Client, as_completed

    from .local_cluster import local_cluster

    cluster = None
    if scheduler is None:
        n = workers or max(1, min(len(payloads), os.cpu_count() or 1))
        cluster = local_cluster(n, resources={"GPU": 1} if any(gpu) else None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        import cloudpickle

        fn_bytes = cloudpickle.dumps(fn)
        futures = [
            client.submit(_in_worker, fn_bytes, p, key=f"{names[i] if names else desc}-{i}", pure=False,
                          resources={"GPU": 1} if g else None)
            for i, (p, g) in enumerate(zip(payloads, gpu))
        ]  # fmt: skip
        index = {f.key: i for i, f in enumerate(futures)}
        done = as_completed(futures, with_results=on_result is not None)
        if progress:
            from tqdm.auto import tqdm

            done = tqdm(done, total=len(futures), desc=desc, unit="task")
        for item in done:
            if on_result is not None:
                future, result = item
                on_result(index[future.key], result)
        return client.gather(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
