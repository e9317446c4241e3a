"""What is not a whole posterior file is refused in one line; temporary files are never outputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from bayes_prune.posterior import FORMAT
from bayes_prune.posterior_file import DIAGNOSTICS, META, read

QUERY = ("--arch", "syn-a", "--task", "syn-x", "--depth", "2", "--width", "16", "--n-train",
         "1000", "--density", "0.5")


def _write(path, meta=None, stats=True):
    """A file with the layout `fit` writes (draws of zeros; enough for the reader)."""
    meta = meta or {"format": FORMAT, "diagnostics": {k: 1.0 for k in DIAGNOSTICS},
                    **{k: {} for k in META if k != "diagnostics"}}
    post = xr.Dataset({"theta": (("chain", "draw", "group", "coef"), np.zeros((2, 50, 1, 3)))},
                      attrs={"bayes_prune": json.dumps(meta)})
    post.to_netcdf(path, group="posterior", engine="h5netcdf")
    if stats:
        xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, 50), bool)),
                    "lp": (("chain", "draw"), np.zeros((2, 50)))}).to_netcdf(
            path, group="sample_stats", engine="h5netcdf", mode="a")
    return path


def _query(path):
    out = subprocess.run([sys.executable, "-m", "bayes_prune.cli", "query", str(path), *QUERY],
                         capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("bayes-prune: error: ") and len(out.stderr.splitlines()) == 1, \
        out.stderr
    return out.stderr


def test_a_whole_file_is_read(tmp_path):
    post, stats, meta = read(_write(tmp_path / "p.nc"))
    assert post["theta"].shape == (2, 50, 1, 3) and "diverging" in stats
    assert meta["format"] == FORMAT


@pytest.mark.parametrize("make, message", [
    (lambda p: _write(p, stats=False), "no sample_stats group (it has: posterior); not a whole "
                                       "posterior file"),
    (lambda p: _write(p, meta={"format": FORMAT}), "the posterior's metadata lacks settings, "
                                                   "centres, groups, configs, archs, tasks, "
                                                   "diagnostics"),
    (lambda p: _write(p, meta={"format": FORMAT, **{k: {} for k in META},
                               "diagnostics": {"max_rhat": 1.0}}),
     "the posterior's diagnostics lack min_ess_bulk, min_ess_tail, divergences, ok"),
    (lambda p: p.mkdir(), "is a directory, not a posterior file"),
    (lambda p: p.write_bytes(_write(p.with_suffix(".w")).read_bytes()[:3000]),
     "not a readable posterior file (OSError: "),
])
def test_a_partial_or_foreign_posterior_is_refused_in_one_line(tmp_path, make, message):
    path = tmp_path / "p.nc"
    make(path)
    before = sorted(os.listdir(tmp_path))
    assert message in _query(path)
    assert sorted(os.listdir(tmp_path)) == before


def test_a_damaged_file_gives_one_line_and_no_finalizer_traceback(tmp_path):
    whole = _write(tmp_path / "w.nc", meta={"format": FORMAT}).read_bytes()  # refused if read
    rng = np.random.default_rng(0)
    for start in rng.integers(0, len(whole) - 512, size=6):
        damaged = bytearray(whole)
        damaged[start:start + 512] = bytes(512)
        (tmp_path / "p.nc").write_bytes(bytes(damaged))
        out = subprocess.run([sys.executable, "-m", "bayes_prune.cli", "query",
                              str(tmp_path / "p.nc"), *QUERY], capture_output=True, text=True)
        assert "Exception ignored" not in out.stderr and "Traceback" not in out.stderr
        assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out.stderr


def test_grid_temp_files_are_the_writers_own_and_swept_when_it_is_gone(tmp_path):
    import socket

    from bayes_prune.grid import write_grid
    from bayes_prune.synthetic import simulate_grid

    out = tmp_path / "g.csv"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    dead = tmp_path / f".g.csv.{host}-{gone.pid}.tmp"
    live = tmp_path / f".g.csv.{host}-{os.getppid()}.tmp"
    elsewhere = tmp_path / ".g.csv.otherhost-1.tmp"
    for f in (dead, live, elsewhere):
        f.write_text("partial")
    write_grid(simulate_grid(rng=0).head(200), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["g.csv", live.name, elsewhere.name])
