"""Who writes: this process as a writer of a shared store and of output files, worker processes
that die with their driver, and how many intra-op threads a job gets.

No torch here: a worker process imports this module first (it is its pool initializer), so the
death signal is set before torch, the data or any run is loaded.

- :class:`Writer` names a process as ``(pid, host, started)``; ``started`` (the process's start
  time, seconds since the epoch) tells a live writer from a later process that reuses its pid.
  :func:`alive` answers for a writer on this host by looking at the process table; for a writer
  on another host the store's lease age answers instead (:mod:`bayes_prune.store`).
- :func:`die_with_parent` (Linux): the kernel kills a worker the moment its driver dies, and a
  worker whose driver died before the signal was set exits at once. :func:`check_parent`, called
  before every commit, is the second line: a worker never commits for a driver that is gone.
- :func:`temp_beside` names a writer's temporary file beside an output (hidden, named after the
  writer, ending in ``.tmp``: never taken for the output, never renamed by another writer);
  :func:`sweep` removes those of writers that are gone, on the next write of that output.
- :func:`threads_for`: one intra-op thread for a small net (its step is too short to split, and
  extra threads only fight other processes for the cores), more only for a big one, never more
  than the cores divided among the workers.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from glob import escape as glob_escape
from math import prod
from pathlib import Path

__all__ = ["Writer", "alive", "die_with_parent", "check_parent", "threads_for", "cores",
           "temp_beside", "sweep"]

# Below this many multiply-adds per training step, a second thread costs more than it gives:
# measured on 2 cores, a width-128 MLP step (3e6 MACs at batch 128) was slower at 2 threads
# (1.14 ms vs 0.88 ms); a width-1024 MLP (4e8) was 2.1x faster.
PARALLEL_WORK = 5e7


def _start_time(pid: int) -> float | None:
    """Start time of process ``pid`` in seconds since the epoch (Linux /proc); None when it is
    not running (or there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):  # exited, not yet reaped: no longer a writer
            return None
        ticks = int(fields[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return round(boot + ticks / os.sysconf("SC_CLK_TCK"), 2)


@dataclass(frozen=True)
class Writer:
    """A process writing to a store: its pid, host and start time (epoch seconds)."""

    pid: int
    host: str
    started: float

    @classmethod
    def current(cls) -> Writer:
        pid = os.getpid()
        started = _start_time(pid)
        return cls(pid, socket.gethostname(), started if started is not None else _IMPORTED)

    @property
    def tag(self) -> str:
        """A file-name-safe name of this writer, for its temporary files."""
        return f"{self.host.replace('/', '_')}-{self.pid}"

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, started {since}"


_PROC = os.path.isdir("/proc/self")  # Linux: a process's state and start time are readable
_IMPORTED = round(time.time(), 2)  # where /proc is missing: this process's start, near enough


def alive(writer: Writer) -> bool | None:
    """Whether ``writer`` still runs: True/False for a writer on this host, None (unknown) for
    one on another host."""
    if writer.host != socket.gethostname():
        return None
    if _PROC:
        started = _start_time(writer.pid)
        return started is not None and abs(started - writer.started) < 0.05  # else reused pid
    return _pid_exists(writer.pid)


def temp_beside(path: Path) -> Path:
    """This writer's temporary file for ``path``: ``.<name>.<host>-<pid>.tmp`` beside it."""
    return path.with_name(f".{path.name}.{Writer.current().tag}.tmp")


UNNAMED_TEMP_AGE = 600.0  # seconds after which a ``.<name>.tmp`` of no named writer is stale


def sweep(path: Path) -> list[Path]:
    """Remove the temporary files beside ``path`` that writers now gone left behind (killed
    before their rename): those of dead processes of this host, and unnamed ones older than
    :data:`UNNAMED_TEMP_AGE`. Returns what was removed."""
    here, gone = socket.gethostname(), []
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*tmp"):
        middle = tmp.name[len(path.name) + 2:-len(".tmp")]
        host, _, pid = middle.rpartition("-")
        if middle == "":
            stale = time.time() - tmp.stat().st_mtime > UNNAMED_TEMP_AGE
        elif pid.isdigit() and host == here.replace("/", "_"):
            stale = _start_time(int(pid)) is None if _PROC else not _pid_exists(int(pid))
        else:
            continue  # another host's writer, or not ours at all
        if stale:
            tmp.unlink(missing_ok=True)
            gone.append(tmp)
    return gone


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_PARENT: int | None = None  # the driver's pid, in a worker process


def die_with_parent(parent: int) -> None:
    """Pool initializer: ask the kernel to SIGKILL this worker when its driver ``parent`` dies,
    then exit at once if it already has (it died while this worker was starting)."""
    global _PARENT
    _PARENT = parent
    try:  # Linux
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    check_parent()


def check_parent() -> None:
    """In a worker: exit at once, without cleanup, when the driver is gone (this process was
    re-parented). A no-op in the driver itself."""
    if _PARENT is not None and os.getppid() != _PARENT:
        os._exit(1)


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_for(params_prunable: int, batch_size: int, input_shape: tuple[int, ...],
                conv: bool, members: int = 1, workers: int = 1) -> int:
    """Intra-op threads for a job: 1 when a training step does fewer than
    :data:`PARALLEL_WORK` multiply-adds, else up to the cores shared among ``workers``.

    The work of a step is estimated as prunable weights x batch x members, times the input's
    positions (length or area) for a convolutional net, whose weights slide over them."""
    work = params_prunable * batch_size * members * (prod(input_shape[1:]) if conv else 1)
    budget = max(1, cores() // max(1, workers))
    return 1 if work < PARALLEL_WORK else min(budget, max(1, int(work // PARALLEL_WORK)))
