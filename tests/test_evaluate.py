"""Extrapolation evaluation of the least-squares baselines (bayes_prune.evaluate)."""

import numpy as np
import pytest

from bayes_prune import evaluate
from bayes_prune.errors import UserError
from bayes_prune.synthetic import simulate_grid


@pytest.fixture(scope="module")
def split():
    grid = simulate_grid(depths=(2, 4), widths=(16, 32, 64, 128), n_trains=(1000, 4000),
                         seeds=(0, 1), rel_noise=0.03)
    return evaluate.split_grid(grid, evaluate.parse_split("params<=10000"))


def test_split_by_params(split):
    fit, held = split
    assert fit["params_total"].max() <= 10000 < held["params_total"].min()
    with pytest.raises(UserError, match="not of the form params<=X"):
        evaluate.parse_split("width<=3")
    with pytest.raises(UserError, match="empty held-out set"):
        evaluate.split_grid(fit, 1e9)


def test_lsq_and_bootstrap_scores(split):
    fit, held = split
    rows = evaluate.evaluate(fit, held, methods=("lsq", "bootstrap"), n_boot=8)
    assert len(rows) == 8
    for row in rows:
        assert row["n_holdout"] == len(held) // 4
        assert row["median_abs_delta"] < 0.2
        assert set(row) >= {"arch", "task", "method", "median_abs_delta", "delta_mean",
                            "delta_std", "coverage_50", "coverage_90", "lpd", "seconds"}
        if row["method"] == "lsq":
            assert row["coverage_90"] is None
        else:
            assert 0 <= row["coverage_50"] <= row["coverage_90"] <= 1


def test_score_of_a_perfect_band():
    # Draws from the very distribution the observations come from cover at nominal rates.
    rng = np.random.default_rng(0)
    import pandas as pd

    mu = np.log(rng.uniform(0.05, 0.5, 4000))
    obs = np.exp(mu + 0.1 * rng.standard_normal(mu.size))
    held = pd.DataFrame({"test_error": obs, "n_test": 10**9})
    draws = mu[:, None] + 0.1 * rng.standard_normal((mu.size, 2000))
    out = evaluate.score(held, draws)
    assert out["coverage_50"] == pytest.approx(0.5, abs=0.03)
    assert out["coverage_90"] == pytest.approx(0.9, abs=0.02)


def test_fit_quality_table():
    grid = simulate_grid(depths=(2,), widths=(16, 64), n_trains=(1000,), seeds=(0, 1, 2))
    table = evaluate.fit_quality(grid)
    assert len(table) == 4 and (table["runs"] == 6).all()
    assert (table["seed_std"] > 0).all() and (table["joint_delta_mean"].abs() < 0.05).all()


def test_evaluate_command_passes_the_bayesian_options_through(split, tmp_path, monkeypatch,
                                                              capsys):
    import json

    from bayes_prune.cli import main
    from bayes_prune.grid import write_grid

    fit, held = split
    write_grid(fit, tmp_path / "fit.csv")
    write_grid(held, tmp_path / "held.csv")
    seen = {}

    def fake_bayes(fit_grid, holdout, **kwargs):  # the sampler is tested in test_fit.py
        seen.update(kwargs)
        return np.log(np.tile(holdout["test_error"].to_numpy()[:, None], (1, 10)))

    monkeypatch.setattr(evaluate, "predict_bayes", fake_bayes)
    rc = main(["evaluate", str(tmp_path / "fit.csv"), "--holdout", str(tmp_path / "held.csv"),
               "--methods", "bayes", "lsq", "--p-depends-on-n", "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["method"] for r in rows} == {"bayes", "lsq"} and len(rows) == 8
    assert seen["p_depends_on_n"] is True and seen["draws"] == 1000 and seen["tune"] == 1000
    bayes = [r for r in rows if r["method"] == "bayes"]
    assert all(r["median_abs_delta"] == 0 and r["coverage_90"] == 1 for r in bayes)
