"""`grid run --executor ray`: the local executor's rounds; a killed worker's run resumed."""

import sqlite3
import sys

import pandas as pd
import pytest
import torch

ray = pytest.importorskip("ray")

from bayes_prune import cli  # noqa: E402
from bayes_prune.imp import run_grid  # noqa: E402
from bayes_prune.ray_exec import run_grid_ray  # noqa: E402
from bayes_prune.spec import load_spec  # noqa: E402
from bayes_prune.store import Store  # noqa: E402

SPEC = """
task = "{task}"
arch = "mlp"
depths = [1]
widths = [8, 16]
n_trains = [{n}]
seeds = [0]
rounds = {rounds}

[recipe]
steps = 60
rewind_step = 5
batch_size = 32
lr = 0.01
"""


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="error")
    yield
    ray.shutdown()


@pytest.fixture
def one_thread():
    """Ray tasks train on one thread each; the local reference does too."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _spec(tmp_path, task="digits", n=400, rounds=5):
    path = tmp_path / f"{task}.toml"
    path.write_text(SPEC.format(task=task, n=n, rounds=rounds))
    return path


def _grid(store):
    return Store(store, create=False).export().drop(columns="device")


def _rows(store, sql):
    with sqlite3.connect(store) as db:
        return db.execute(sql).fetchall()


def test_ray_grid_stores_the_rounds_of_the_local_executor(tmp_path, ray_instance, one_thread,
                                                          capsys):
    spec = _spec(tmp_path, "mnist1d", 200, 3)
    on_ray, local = str(tmp_path / "ray.sqlite"), str(tmp_path / "local.sqlite")
    assert cli.main(["grid", "run", str(spec), "--store", on_ray, "--device", "cpu",
                     "--executor", "ray", "--address", "auto", "--max-retries", "1"]) == 0
    assert cli.main(["grid", "run", str(spec), "--store", local, "--device", "cpu"]) == 0
    ours, reference = _grid(on_ray), _grid(local)
    assert len(ours) == 8 and not ours.duplicated(["run_id", "round"]).any()
    pd.testing.assert_frame_equal(ours, reference)  # same test errors, densities, losses
    capsys.readouterr()
    assert cli.main(["grid", "status", str(spec), "--store", on_ray]) == 0
    assert "2 done" in capsys.readouterr().out


def test_a_killed_worker_resumes_from_its_last_stored_round(tmp_path, ray_instance,
                                                            one_thread):
    runs = load_spec(_spec(tmp_path)).runs()
    store, marker, lines = str(tmp_path / "ray.sqlite"), tmp_path / "killed", []
    # the first task to hand on round 2 SIGKILLs its own worker; Ray retries the task
    failures = run_grid_ray(runs, store, "cpu", write=lines.append,
                            _fault={"round": 2, "once": str(marker)})
    assert failures == [] and marker.exists()
    rounds = _rows(store, "SELECT run_id, round FROM rounds ORDER BY run_id, round")
    assert rounds == sorted((c.run_id, r) for c in runs for r in range(6))  # each once
    assert sorted(_rows(store, "SELECT status, attempts FROM runs")) == [("done", 1),
                                                                         ("done", 2)]
    assert sum("resumes after round 2" in line for line in lines) == 1  # nothing redone
    assert not list((tmp_path / "ray.sqlite.ckpt").glob("*.pt"))
    run_grid(runs, str(tmp_path / "local.sqlite"), "cpu")
    pd.testing.assert_frame_equal(_grid(store), _grid(tmp_path / "local.sqlite"))


def test_a_run_that_keeps_dying_is_recorded_failed_and_retried_later(tmp_path, ray_instance,
                                                                      capsys):
    spec = _spec(tmp_path)
    runs = load_spec(spec).runs()
    store, doomed, lines = str(tmp_path / "ray.sqlite"), runs[0].run_id, []
    failures = run_grid_ray(runs, store, "cpu", max_retries=1, write=lines.append,
                            _fault={"round": 1, "run_id": doomed})
    assert [(c.run_id, "WorkerCrashedError" in err) for c, err in failures] == [(doomed, True)]
    assert _rows(store, f"SELECT status, attempts FROM runs WHERE run_id='{doomed}'") == [
        ("failed", 2)]
    assert _rows(store, f"SELECT round FROM rounds WHERE run_id='{doomed}'") == [(0,), (1,)]
    capsys.readouterr()
    cli.main(["grid", "status", str(spec), "--store", store])
    out = capsys.readouterr().out
    assert "1 done" in out and "1 failed" in out and f"failed: {doomed}" in out
    # re-running the grid retries the failed run from its last stored round
    assert run_grid_ray(runs, store, "cpu", write=lines.append) == []
    assert lines[-5].endswith("resumes after round 1 on cpu")
    assert len(_rows(store, f"SELECT round FROM rounds WHERE run_id='{doomed}'")) == 6


def test_without_ray_the_error_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    store = tmp_path / "s.sqlite"
    code = cli.main(["grid", "run", str(_spec(tmp_path)), "--store", str(store),
                     "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install bayes-prune[ray]" in err and err.count("\n") == 1
    assert not store.exists()
