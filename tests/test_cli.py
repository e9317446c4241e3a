"""The command line of the foundation: help, lsq output contract, bad input."""

import json
import subprocess
import sys

import pytest

from bayes_prune.cli import main
from bayes_prune.grid import write_grid
from bayes_prune.synthetic import simulate_grid


def _run(*args):
    return subprocess.run([sys.executable, "-m", "bayes_prune.cli", *args],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def grid_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "grid.csv"
    write_grid(simulate_grid(depths=(2, 3), widths=(16, 64), n_trains=(1000, 4000), seeds=(0,)),
               path)
    return path


def test_help_explains_every_argument():
    out = _run("--help")
    assert out.returncode == 0 and "lsq" in out.stdout
    out = _run("lsq", "--help")
    for word in ("GRID", "--form", "single", "joint", "--json", "delta"):
        assert word in out.stdout


def test_lsq_json_contract(grid_csv, capsys):
    assert main(["lsq", str(grid_csv), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4
    for row in rows:
        assert set(row) == {"arch", "task", "coefficients", "delta_mean", "delta_std",
                            "n_points"}
        assert set(row["coefficients"]) == {"gamma", "p_prime", "phi", "psi", "eps_up"}
    assert main(["lsq", str(grid_csv), "--form", "single", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 32 and "p" in rows[0]["coefficients"]


def test_lsq_table(grid_csv, capsys):
    assert main(["lsq", str(grid_csv)]) == 0
    assert "delta mean=" in capsys.readouterr().out


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("test_error", "err", 1), "missing column(s) test_error"),
    (lambda t: t.replace(",0,0,1.0,", ",0,0,0.0,", 1), "row 2, column 'density': 0.0 is not"),
])
def test_bad_grid_exits_nonzero_with_one_line(grid_csv, tmp_path, edit, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(edit(grid_csv.read_text()))
    before = sorted(p.name for p in tmp_path.iterdir())
    out = _run("lsq", str(bad), "--json")
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1 and message in out.stderr
    assert out.stderr.startswith("bayes-prune: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_synth_writes_a_labelled_grid(tmp_path, capsys):
    assert main(["synth", "-o", str(tmp_path / "s.csv"), "--n-test", "500"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    assert "synthetic" in (tmp_path / "s.csv").read_text()


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--synthetic", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and out.count("(true ") == 20
    assert (tmp_path / "grid.csv").is_file()


def test_the_depth_term_options_reach_fit():
    """The envelope's depth term is on by default (--dense-depth spelled out;
    --no-dense-depth turns it off), --paper-law turns every variant off whatever else is
    asked, and evaluate --posterior names a changed option as the user typed it."""
    import argparse

    from bayes_prune.cli_options import _add_budget, _add_variants, _changed_fit_options, _variants

    p = argparse.ArgumentParser()
    _add_budget(p)
    _add_variants(p)
    assert _variants(p.parse_args([]))["dense_depth"] is True
    assert _variants(p.parse_args(["--dense-depth"]))["dense_depth"] is True
    assert _variants(p.parse_args(["--no-dense-depth"]))["dense_depth"] is False
    assert _variants(p.parse_args(["--paper-law", "--dense-depth"]))["dense_depth"] is False
    assert _variants(p.parse_args(["--paper-law"]))["curved"] is False
    assert _changed_fit_options(p.parse_args(["--dense-depth"])) == []
    assert _changed_fit_options(p.parse_args(["--no-dense-depth", "--no-curved"])) == \
        ["--no-curved", "--no-dense-depth"]
    assert _changed_fit_options(p.parse_args([])) == []
