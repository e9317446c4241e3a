"""Run a grid's IMP runs as Ray tasks, the results going into the one SQLite store.

Design. The driver (the ``bayes-prune grid run --executor ray`` process) is the only writer of
the store and of its checkpoints. Each run is one Ray task (``num_cpus=1``,
``num_gpus=--gpus-per-run``, ``max_retries=--max-retries``, transient ``OSError`` retried too)
that calls :func:`bayes_prune.imp.run_imp` unchanged, with a stand-in store
(:class:`_RelayStore`) in place of :class:`~bayes_prune.store.Store`: every finished round,
together with the bytes of run_imp's checkpoint of that round, is handed synchronously to a
relay actor (:class:`_Relay`, on the driver's node) before the next round starts. The driver
drains the relay twice a second and writes each round as local runs do: the checkpoint file
first, then the round in its own transaction. A lost worker thus loses only its current round.

Resume. The driver ships a run's stored checkpoint (bytes) with its task. A task retried by
Ray gets the same arguments, so it first asks the relay for the newest checkpoint it passed on
for that run, which is at least as new as the store's; run_imp then resumes from it exactly as
it resumes locally (all randomness of a round is seeded by ``(seed, round)``). Rounds delivered
twice are kept once (the store's ``(run_id, round)`` key). Every attempt marks the run
``running`` with one more attempt. A task that still fails after its retries is marked
``failed`` in the store (``bayes-prune grid status`` lists it) and returned to the caller.

Ray is imported only here, and only when this path runs.
"""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Callable, Sequence

from .errors import UserError
from .spec import RunConfig
from .store import Store

__all__ = ["run_grid_ray"]

POLL = 0.5  # seconds between drains of the relay
TRANSIENT = (OSError,)  # application errors Ray retries (I/O, network); the rest fail at once
INSTALL = "pip install bayes-prune[ray]"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


class _Relay:
    """Actor between the tasks and the driver: queues what tasks report, in arrival order,
    and remembers each unfinished run's newest checkpoint for retried tasks."""

    def __init__(self):
        self._events: list[tuple] = []
        self._latest: dict[str, bytes] = {}
        self._done: set[str] = set()

    def start(self, run_id, device, code_version, resumes):
        self._events.append(("start", run_id, device, code_version, resumes))

    def round(self, run_id, round_, values, done, checkpoint):
        self._events.append(("round", run_id, round_, values, done, checkpoint))
        if checkpoint is not None:
            self._latest[run_id] = checkpoint
        if done:
            self._done.add(run_id)
            self._latest.pop(run_id, None)

    def resume(self, run_id):
        return run_id in self._done, self._latest.get(run_id)

    def drain(self):
        events, self._events = self._events, []
        return events


class _RelayStore:
    """The part of :class:`Store` that ``run_imp`` uses, run inside a task: reads come from
    what the driver shipped (or the relay's newer checkpoint), writes go to the relay."""

    def __init__(self, ray, relay, run_id: str, checkpoint: bytes | None, fault=None):
        import torch

        self._ray, self._relay, self._fault = ray, relay, fault
        self._done, latest = ray.get(relay.resume.remote(run_id))
        blob = latest if latest is not None else checkpoint
        self._ckpt = None if blob is None else torch.load(io.BytesIO(blob), map_location="cpu",
                                                          weights_only=True)
        self._pending: bytes | None = None

    def run_status(self, run_id):
        return "done" if self._done else None

    def claim(self, cfg, device, code_version) -> bool:
        """The driver claims the run in the store when the start event reaches it."""
        if self._done:
            return False
        self.start(cfg, device, code_version)
        return True

    def start(self, cfg, device, code_version):
        resumes = None if self._ckpt is None else int(self._ckpt["round"])
        self._ray.get(self._relay.start.remote(cfg.run_id, device, code_version, resumes))

    def load_checkpoint(self, run_id):
        return self._ckpt

    def save_checkpoint(self, run_id, state):
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        self._pending = buf.getvalue()  # sent with the round that follows

    def add_round(self, run_id, round_, values, done):
        blob, self._pending = self._pending, None
        self._ray.get(self._relay.round.remote(run_id, round_, values, done, blob))
        if self._fault is not None:
            _inject(self._fault, run_id, round_)

    def drop_checkpoint(self, run_id):
        pass  # the driver drops it when it stores the last round


def _inject(fault: dict, run_id: str, round_: int) -> None:
    """Tests only: SIGKILL this worker after ``round_`` was handed on. ``fault`` holds
    ``round``, optionally ``run_id`` and ``once`` (a marker file: only the first to create it
    dies)."""
    if round_ != fault["round"] or fault.get("run_id") not in (None, run_id):
        return
    if fault.get("once"):
        try:
            os.close(os.open(fault["once"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


def _train_run(cfg: RunConfig, checkpoint: bytes | None, relay, device: str,
               data_dir: str | None, fault=None) -> None:
    """The Ray task: one IMP run, resumed from the newest checkpoint the driver side holds."""
    import ray
    import torch

    from .imp import resolve_device, run_imp

    torch.set_num_threads(1)  # one CPU per task, as the local process pool
    store = _RelayStore(ray, relay, cfg.run_id, checkpoint, fault)
    run_imp(cfg, store, resolve_device(device), data_dir)


def _connect(ray, address: str) -> bool:
    """Join (or start) a Ray instance; True when this call started it."""
    if ray.is_initialized():
        return False
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "://" not in address:  # Ray waits minutes for a wrong one
        import socket

        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as exc:
            raise UserError(f"no Ray cluster answers at --address {address} ({exc}); start "
                            "its head with `ray start --head`") from None
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False)
        else:
            ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot connect to a Ray cluster at --address {address} ({first}); "
                        "start one with `ray start --head`, or use --address local") from None
    return True


def _describe(ray, exc: BaseException, max_retries: int) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and cause is not None:
        return f"{type(cause).__name__}: {cause}"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first} (after {max_retries} retries)"


def _write_checkpoint(store: Store, run_id: str, blob: bytes) -> None:
    store.ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = store.checkpoint_path(run_id)
    tmp = store.temp_checkpoint_path(run_id)
    tmp.write_bytes(blob)
    os.replace(tmp, final)


def run_grid_ray(runs: Sequence[RunConfig], store_path: str, device: str = "auto",
                 address: str = "auto", gpus_per_run: float = 0.0, max_retries: int = 3,
                 data_dir: str | None = None, write: Callable[[str], None] | None = None,
                 _fault: dict | None = None) -> list[tuple[RunConfig, str]]:
    """Run every config not yet done as a Ray task; return the failures, as
    :func:`bayes_prune.imp.run_grid` does. ``address``: ``auto`` (the running cluster),
    ``local`` (start a Ray instance here) or ``HOST:PORT``. An already initialised Ray is
    used as it is. ``_fault`` is a fault-injection hook for tests (see :func:`_inject`)."""
    if gpus_per_run < 0:
        raise UserError(f"--gpus-per-run must be >= 0, got {gpus_per_run}")
    if max_retries < 0:
        raise UserError(f"--max-retries must be >= 0, got {max_retries}")
    ray = _import_ray()
    from tqdm.auto import tqdm

    write = write or tqdm.write
    status = {}
    if os.path.isfile(store_path):
        peek = Store(store_path)
        status = peek.statuses()
        peek.close()
    todo = [c for c in runs if status.get(c.run_id) != "done"]
    if not todo:
        return []
    started = _connect(ray, address)
    store = Store(store_path)
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc="runs", unit="run")
    try:
        return _drive(ray, todo, store, device, gpus_per_run, max_retries, data_dir, write,
                      bar, _fault)
    finally:
        bar.close()
        store.close()
        if started:
            ray.shutdown()


def _drive(ray, todo, store: Store, device, gpus_per_run, max_retries, data_dir, write, bar,
           fault) -> list[tuple[RunConfig, str]]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from . import __version__
    from .imp import _log_line

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    relay = ray.remote(_Relay).options(num_cpus=0, scheduling_strategy=here).remote()
    task = ray.remote(_train_run).options(num_cpus=1, num_gpus=gpus_per_run,
                                          max_retries=max_retries,
                                          retry_exceptions=list(TRANSIENT))
    cfgs = {c.run_id: c for c in todo}
    stored = {c.run_id: set(store.rounds(c.run_id)) for c in todo}

    def apply(events):
        for ev in events:
            if ev[0] == "start":
                _, run_id, dev, version, resumes = ev
                store.start(cfgs[run_id], dev, version)
                if resumes is not None:
                    write(f"run {run_id}: resumes after round {resumes} on {dev}")
                continue
            _, run_id, round_, values, done, blob = ev
            if blob is not None:  # checkpoint first, then commit, as run_imp does locally
                _write_checkpoint(store, run_id, blob)
            store.add_round(run_id, round_, values, done=done)
            if done:
                store.drop_checkpoint(run_id)
            if round_ not in stored[run_id]:
                stored[run_id].add(round_)
                write(_log_line(cfgs[run_id], round_, values))

    pending = {}
    for cfg in todo:
        path = store.checkpoint_path(cfg.run_id)
        blob = path.read_bytes() if path.is_file() else None
        pending[task.remote(cfg, blob, relay, device, data_dir, fault)] = cfg
    failures = []
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL)
            apply(ray.get(relay.drain.remote()))  # all a ready task reported is in here
            for ref in ready:
                cfg = pending.pop(ref)
                try:
                    ray.get(ref)
                    err = None
                except Exception as exc:  # recorded in the store, never dropped
                    err = _describe(ray, exc, max_retries)
                if store.run_status(cfg.run_id) != "done":
                    err = err or "the task ended before the run was done"
                    if store.run_status(cfg.run_id) is None:  # failed before it started
                        store.start(cfg, device, __version__)
                    store.fail(cfg.run_id, err)
                    failures.append((cfg, err))
                bar.update()
    except BaseException:
        try:  # interrupted: stop the tasks, keep the rounds they finished
            for ref in pending:
                ray.cancel(ref, force=True)
            apply(ray.get(relay.drain.remote(), timeout=30))
        except Exception:
            pass
        raise
    return failures
