"""`bayes-prune grid`: killed and resumed runs, bad specs, export."""

import os
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
widths = [8, 16]
n_trains = [400]
seeds = [0, 1]
rounds = 6

[recipe]
steps = 120
rewind_step = 5
batch_size = 64
lr = 0.01
"""


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "bayes_prune.cli", *args], capture_output=True,
                          text=True, **kw)


def _rounds(store):
    if not os.path.exists(store):
        return 0
    with sqlite3.connect(store) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def _export(store, out):
    assert _cli("grid", "export", "--store", str(store), "-o", str(out)).returncode == 0
    return pd.read_csv(out).drop(columns=["device"])


def test_sigkill_then_resume_gives_the_uninterrupted_grid(tmp_path):
    spec = tmp_path / "g.toml"
    spec.write_text(SPEC)
    store = tmp_path / "killed.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "bayes_prune.cli", "grid", "run", str(spec),
                             "--store", str(store), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _rounds(store) < 9 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the grid finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < _rounds(store) < 28
    status = _cli("grid", "status", str(spec), "--store", str(store))
    assert "left of 4" in status.stdout
    assert _cli("grid", "run", str(spec), "--store", str(store), "--device", "cpu").returncode == 0
    clean = tmp_path / "clean.sqlite"
    assert _cli("grid", "run", str(spec), "--store", str(clean), "--device", "cpu").returncode == 0
    resumed, reference = _export(store, tmp_path / "a.csv"), _export(clean, tmp_path / "b.csv")
    assert not resumed.duplicated(["run_id", "round"]).any()
    pd.testing.assert_frame_equal(resumed, reference)
    assert "4 done" in _cli("grid", "status", str(spec), "--store", str(store)).stdout
    # a finished grid re-run does nothing and touches nothing
    before = _rounds(store)
    assert _cli("grid", "run", str(spec), "--store", str(store)).returncode == 0
    assert _rounds(store) == before


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('task = "digits"', 'task = "imagenet"'), "field 'task': unknown task"),
    (lambda s: s.replace('arch = "mlp"', 'arch = "vgg"'), "unknown arch 'vgg'"),
    (lambda s: s.replace("widths = [8, 16]", "widths = [0, 16]"), "field 'widths'"),
    (lambda s: s.replace("rounds = 6", "rounds = 0"), "field 'rounds'"),
    (lambda s: s.replace("seeds = [0, 1]\n", ""), "missing field 'seeds'"),
    (lambda s: s.replace("lr = 0.01", "lr = -1"), "recipe.lr"),
    (lambda s: s.replace("steps = 120", "stepz = 120"), "unknown recipe field(s) stepz"),
    (lambda s: s + "\n[[[", "not a TOML file"),
    (lambda s: s.replace('task = "digits"', 'task = "mnist1d"').replace(
        "lr = 0.01", 'lr = 0.01\naugment = "flip_crop"'), "recipe.augment = 'flip_crop' needs "
     "images; task 'mnist1d' has inputs of shape (1, 40)"),
    (lambda s: s.replace("lr = 0.01", 'lr = 0.01\nprecision = "fp16"'),
     "recipe.precision = 'fp16' must be 'auto', 'fp32' or 'bf16'"),
])
def test_bad_spec_names_the_field_and_leaves_the_store(tmp_path, edit, message):
    spec = tmp_path / "bad.toml"
    spec.write_text(edit(SPEC))
    store = tmp_path / "s.sqlite"
    store.write_bytes(b"")  # an existing store must stay as it is
    out = _cli("grid", "run", str(spec), "--store", str(store))
    assert out.returncode == 2
    assert message in out.stderr and out.stderr.count("\n") == 1
    assert store.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.toml", "s.sqlite"]


def test_export_of_a_missing_store(tmp_path):
    out = _cli("grid", "export", "--store", str(tmp_path / "none.sqlite"), "-o",
               str(tmp_path / "g.csv"))
    assert out.returncode == 2 and "no such store" in out.stderr
    assert not (tmp_path / "g.csv").exists()


def test_every_shipped_spec_loads():
    from pathlib import Path

    from bayes_prune.spec import load_spec

    specs = sorted((Path(__file__).parents[1] / "experiments").glob("*.toml"))
    assert {"cifar10_resnet_paper", "cifar10_resnet_fast"} <= {p.stem for p in specs}
    for path in specs:
        assert load_spec(path).runs()
