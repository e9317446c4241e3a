"""The README's "Bring your own results" examples, run as written: the open_lth import, the table
import, and the 20-line training loop on `digits` recorded with Recorder and imp_loop, killed in
the middle of a run, resumed, exported and fitted."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SECTION = re.search(r"## Bring your own results\n(.*?)\n## ", (REPO / "README.md").read_text(),
                    re.S).group(1)
SH, PY = (re.findall(rf"```{kind}\n(.*?)```", SECTION, re.S) for kind in ("sh", "python"))


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


def _sh(block: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a README shell block with `bayes-prune` as this checkout's CLI."""
    script = f'bayes-prune() {{ "{sys.executable}" -m bayes_prune.cli "$@"; }}\nset -e\n{block}'
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=600)


@pytest.mark.skipif(not (SHARED / "external" / "open_lth_runs").is_dir(),
                    reason="../shared/external is not here")
def test_open_lth_example(tmp_path):
    block = SH[0].replace("../shared", str(SHARED))
    done = _sh(block, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote 112 rows (16 runs, 8 configurations; density 0.262-1)" in done.stdout
    assert "arch=mlp task=fashion-mnist" in done.stdout and "gamma=50 " in done.stdout


def test_table_example(tmp_path):
    done = _sh(SH[1], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote 6 rows (2 runs, 1 configurations; density 0.512-1)" in done.stdout
    grid = pd.read_csv(tmp_path / "my_runs.grid.csv")
    assert grid["round"].tolist() == [0, 1, 2, 3, 0, 1]
    assert grid["test_error"].round(6).tolist() == [0.086, 0.089, 0.098, 0.125, 0.09, 0.092]
    assert set(grid["random_error"]) == {0.9}


# Kill the loop from inside: SIGKILL at the Nth optimizer step, no clean-up of any kind.
KILLER = """
import os, signal, torch
_step, _n = torch.optim.Adam.step, [0]
def _killing_step(self, *a, **k):
    _n[0] += 1
    if _n[0] == {at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return _step(self, *a, **k)
torch.optim.Adam.step = _killing_step
"""
STEPS, ROUNDS, REWIND = 200, 14, 10  # the example's schedule: rounds 1.. retrain from step 10


def _rounds(store: Path) -> pd.DataFrame:
    with sqlite3.connect(store) as db:
        return pd.read_sql_query("SELECT r.width, r.status, d.round, d.density, d.test_error "
                                 "FROM rounds d JOIN runs r USING (run_id) "
                                 "ORDER BY r.width, d.round", db)


@pytest.mark.slow
def test_training_loop_example_killed_resumed_and_fitted(tmp_path):
    loop = PY[0]
    assert len([x for x in loop.splitlines() if x.strip()]) <= 30
    assert f"steps={STEPS}" in loop and f"rounds={ROUNDS}, rewind_step={REWIND}" in loop
    # uninterrupted, for reference
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "loop.py").write_text(loop)
    run = subprocess.run([sys.executable, "loop.py"], cwd=whole, env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    # killed in the middle of the second run's round 5 training
    user = tmp_path / "user"
    user.mkdir()
    (user / "loop.py").write_text(loop)
    per_run = STEPS + ROUNDS * (STEPS - REWIND)
    at = per_run + STEPS + 4 * (STEPS - REWIND) + 77
    killed = subprocess.run([sys.executable, "-c", KILLER.format(at=at) + loop], cwd=user,
                            env=_env(), capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    part = _rounds(user / "runs" / "mine.sqlite")
    assert part.groupby("width")["round"].max().to_dict() == {8: ROUNDS, 16: 4}
    assert part.groupby("width")["status"].first().to_dict() == {8: "done", 16: "running"}
    status = _sh("bayes-prune grid status --store runs/mine.sqlite", user)
    assert "mlp/digits: 1 done, 1 running or interrupted, 0 failed" in status.stdout
    # run again: resumes, and gives the uninterrupted numbers
    again = subprocess.run([sys.executable, "loop.py"], cwd=user, env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    resumed, reference = _rounds(user / "runs" / "mine.sqlite"), _rounds(whole / "runs" /
                                                                         "mine.sqlite")
    assert len(resumed) == 3 * (ROUNDS + 1)
    pd.testing.assert_frame_equal(resumed, reference)
    assert set(resumed["status"]) == {"done"}
    assert resumed["density"].min() < 0.8 ** ROUNDS * 1.01
    # the README's commands after it: status, export, least-squares fit
    done = _sh(SH[2], user)
    assert done.returncode == 0, done.stderr
    assert "mlp/digits: 3 done, 0 running or interrupted, 0 failed" in done.stdout
    assert "wrote 45 rows (3 runs) to mine.csv" in done.stdout
    fit = re.search(r"gamma=(\S+) p_prime=(\S+) .* delta mean=(\S+)% std=(\S+)%", done.stdout)
    assert fit is not None, done.stdout
    assert 0.1 < float(fit.group(1)) < 50 and abs(float(fit.group(3))) < 10
