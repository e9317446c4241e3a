"""The store's claims: one writer per run, taken over when its writer is gone."""

import os
import sqlite3
import subprocess
import sys

import pytest

from bayes_prune.spec import Recipe, RunConfig
from bayes_prune.store import Held, LeaseLost, Store
from bayes_prune.workers import Writer, _start_time

CFG = RunConfig("digits", "mlp", 1, 8, 300, 0, 3, Recipe(steps=50, rewind_step=5))
VALUES = dict(density=1.0, test_error=0.1, test_mistakes=10, n_test=100, train_loss=0.3,
              params_total=100, params_prunable=90, params_nonzero=100, seconds=0.1)


def _hold(store_path, writer: Writer, heartbeat: float):
    db = sqlite3.connect(store_path)
    with db:
        db.execute("UPDATE runs SET owner_pid=?, owner_host=?, owner_started=?, heartbeat=? "
                   "WHERE run_id=?", (writer.pid, writer.host, writer.started, heartbeat,
                                      CFG.run_id))
    db.close()


def test_a_live_writers_claim_is_kept_and_a_dead_ones_taken_over(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    assert store.claim(CFG, "cpu", "t")
    assert store.claim(CFG, "cpu", "t")  # already ours: no second attempt
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = Writer(other.pid, store.writer.host, _start_time(other.pid))
        _hold(path, live, heartbeat=0.0)  # on this host, liveness is the process's, not age
        assert not store.claim(CFG, "cpu", "t")
        assert store.held_by_others() == {CFG.run_id: live}
        with pytest.raises(Held, match=f"pid {other.pid} on "):
            store.start(CFG, "cpu", "t")
        with pytest.raises(LeaseLost, match="no longer claimed by this writer"):
            store.add_round(CFG.run_id, 0, VALUES, done=False)
        assert store.rounds(CFG.run_id) == []
    finally:
        other.kill()
        other.wait()
    ckpt_tmp = store.ckpt_dir / f"{CFG.run_id}.pt.{live.tag}.tmp"
    ckpt_tmp.parent.mkdir(parents=True)
    ckpt_tmp.write_bytes(b"partial")
    assert store.claim(CFG, "cpu", "t")  # its writer is gone: taken over, its temp removed
    assert not ckpt_tmp.exists()
    store.add_round(CFG.run_id, 0, VALUES, done=False)
    assert store.rounds(CFG.run_id) == [0]
    attempts = sqlite3.connect(path).execute("SELECT attempts FROM runs").fetchone()[0]
    assert attempts == 2
    store.close()


def test_another_hosts_claim_is_taken_over_once_its_heartbeat_is_old(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    store.claim(CFG, "cpu", "t")
    import time

    away = Writer(4242, "elsewhere", 1.0)
    _hold(path, away, heartbeat=time.time())
    assert not store.claim(CFG, "cpu", "t")
    _hold(path, away, heartbeat=time.time() - 3600)
    assert store.claim(CFG, "cpu", "t")
    store.close()


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "an empty file, not an SQLite store"),
    (lambda p: p.mkdir(), "is a directory, not an SQLite store file"),
    (lambda p: p.write_text("run,round\n"), "not a bayes_prune store"),
])
def test_what_is_not_a_store_is_refused_and_left_alone(tmp_path, make, message):
    path = tmp_path / "x.sqlite"
    make(path)
    before = path.read_bytes() if path.is_file() else None
    for create in (True, False):
        with pytest.raises(Exception, match=message):
            Store(path, create=create)
    assert (path.read_bytes() if path.is_file() else None) == before
    assert sorted(os.listdir(tmp_path)) == ["x.sqlite"]


def test_status_names_who_runs_what_and_who_is_gone(tmp_path, capsys):
    import signal
    import time

    from bayes_prune.cli import main
    from bayes_prune.spec import load_spec

    spec = tmp_path / "g.toml"
    spec.write_text('task = "digits"\narch = "mlp"\ndepths = [1]\nwidths = [8]\n'
                    'n_trains = [300]\nseeds = [0]\nrounds = 3\n')
    cfg = load_spec(spec).runs()[0]
    path = tmp_path / "s.sqlite"
    Store(path).claim(cfg, "cpu", "t")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        db = sqlite3.connect(path)
        with db:
            db.execute("UPDATE runs SET owner_pid=?, owner_started=?", (other.pid,
                                                                        _start_time(other.pid)))
        db.close()
        assert main(["grid", "status", str(spec), "--store", str(path)]) == 0
        assert f"running: {cfg.run_id} depth=1 width=8 n_train=300 seed=0 by pid {other.pid} " \
            in capsys.readouterr().out
        os.kill(other.pid, signal.SIGKILL)  # not reaped yet: a zombie is no writer either
        while open(f"/proc/{other.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
        assert main(["grid", "status", str(spec), "--store", str(path)]) == 0
        assert f"interrupted: {cfg.run_id}" in capsys.readouterr().out
    finally:
        other.kill()
        other.wait()
