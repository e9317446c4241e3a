"""Several `grid run` on one store, and workers that die with their driver."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

SPEC = """
task = "digits"
arch = "mlp"
depths = [1]
widths = [8, 16, 24]
n_trains = [300]
seeds = [0, 1]
rounds = 5

[recipe]
steps = 150
rewind_step = 5
batch_size = 32
lr = 0.01
stop_within = 0.0
"""

COMPARED = ["run_id", "round", "density", "test_error", "test_mistakes", "params_nonzero"]


def _grid_run(spec, store, *extra, out=None):
    return subprocess.Popen([sys.executable, "-m", "bayes_prune.cli", "grid", "run", str(spec),
                             "--store", str(store), "--device", "cpu", *extra],
                            stdout=out or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _query(store, sql, args=()):
    if not os.path.exists(store):
        return []
    db = sqlite3.connect(store, timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def _export(store):
    db = sqlite3.connect(store)
    try:
        return pd.read_sql_query(
            "SELECT run_id, round, density, test_error, test_mistakes, params_nonzero "
            "FROM rounds ORDER BY run_id, round", db)
    finally:
        db.close()


def _group_alive(pgid) -> list[int]:
    """Pids of the live (not zombie) processes of process group ``pgid``."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(name))
    return pids


@pytest.mark.slow
def test_three_writers_one_killed_share_a_store(tmp_path):
    spec = tmp_path / "g.toml"
    spec.write_text(SPEC)
    shared, alone = tmp_path / "shared.sqlite", tmp_path / "alone.sqlite"
    logs = [open(tmp_path / f"w{i}.log", "w") for i in range(4)]
    procs = [_grid_run(spec, shared, "--no-batch", out=logs[0]),
             _grid_run(spec, shared, "--no-batch", out=logs[1]),
             _grid_run(spec, shared, out=logs[2])]  # batched and solo writers mixed
    victim = procs[1]
    deadline = time.time() + 180
    while not _query(shared, "SELECT run_id FROM runs WHERE status='running' AND owner_pid=?",
                     (victim.pid,)):
        assert time.time() < deadline and victim.poll() is None, "writer 2 never held a run"
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    procs.append(_grid_run(spec, shared, "--no-batch", out=logs[3]))  # restarted
    assert _grid_run(spec, alone).wait(timeout=300) == 0
    for p in (procs[0], procs[2], procs[3]):
        assert p.wait(timeout=300) == 0
    for f in logs:
        f.close()

    runs = _query(shared, "SELECT status, attempts, error FROM runs")
    assert len(runs) == 6 and all(s == "done" and err is None for s, _, err in runs)
    assert all(a in (1, 2) for _, a, _ in runs)  # 2: taken over from the killed writer
    # every round trained by one writer: no (run, round) line appears in two writers' logs
    done = [m for i in range(4) for m in re.findall(r"round +(\d+): .*\[(\w+)\]",
                                                   (tmp_path / f"w{i}.log").read_text())]
    assert len(done) == len(set(done))
    pd.testing.assert_frame_equal(_export(shared)[COMPARED], _export(alone)[COMPARED])
    assert not list((tmp_path / "shared.sqlite.ckpt").glob("*"))  # no checkpoint, no temp


SLOW_SPEC = SPEC.replace("steps = 150", "steps = 400").replace("widths = [8, 16, 24]",
                                                              "widths = [8, 16, 24, 32]")


@pytest.mark.slow
def test_workers_die_with_their_driver(tmp_path):
    spec = tmp_path / "g.toml"
    spec.write_text(SLOW_SPEC)
    # killed while the workers spawn (the first second or two), or while they train
    for trial, wait in enumerate((0.2, 0.7, 1.3, 2.2, 3.5, 6.0)):
        store = tmp_path / f"s{trial}.sqlite"
        driver = _grid_run(spec, store, "--workers", "2", "--no-batch")
        time.sleep(wait)
        killed = time.time()
        os.killpg(driver.pid, 0)
        driver.kill()  # the driver only, as an out-of-memory killer would
        driver.wait()
        while _group_alive(driver.pid) and time.time() < killed + 5:
            time.sleep(0.05)
        assert not _group_alive(driver.pid), f"trial {trial}: a worker outlived its driver"
        rows = _query(store, "SELECT COUNT(*), MAX(created) FROM rounds")
        if rows and rows[0][0]:
            assert rows[0][1] < killed + 0.5, f"trial {trial}: a round committed after the kill"
        time.sleep(1)
        assert _query(store, "SELECT COUNT(*), MAX(created) FROM rounds") == rows
