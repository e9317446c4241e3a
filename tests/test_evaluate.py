"""Extrapolation evaluation of the least-squares baselines (bayes_prune.evaluate)."""

import numpy as np
import pandas as pd
import pytest

from bayes_prune import evaluate
from bayes_prune.errors import UserError
from bayes_prune.synthetic import default_truths, simulate_grid, synthetic_params


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


def _drifting_grid(rate):
    # The invariant of each configuration shifted by rate * log(params / smallest params): the
    # law's p' drifts with scale, as in the reference grids, and a fit on small networks
    # misses the large ones by more the larger they are.
    from bayes_prune.law import PruneLaw
    from bayes_prune.synthetic import Truth, synthetic_params

    base = default_truths()[("syn-a", "syn-x")]
    frames, p0 = [], synthetic_params(2, 8)
    for depth in (2, 3, 4):
        for width in (8, 16, 32, 64, 128):
            law = base.law.__dict__ | {"p_prime": base.law.p_prime * (
                synthetic_params(depth, width) / p0) ** -rate}
            frames.append(simulate_grid({("syn-a", "syn-x"): Truth(PruneLaw(**law), base.dense)},
                                        depths=(depth,), widths=(width,), n_trains=(1000, 4000),
                                        seeds=(0, 1), rel_noise=0.03, rng=depth * 1000 + width))
    return pd.concat(frames, ignore_index=True)


def test_extrapolation_discrepancy_measures_a_drifting_law():
    ok = evaluate.extrapolation_discrepancy(_drifting_grid(0.0))["syn-a/syn-x"]
    drift = evaluate.extrapolation_discrepancy(_drifting_grid(0.5))["syn-a/syn-x"]
    assert ok["splits"] == drift["splits"] == 2 and ok["configurations"] > 10
    assert ok["max_params"] == drift["max_params"] == synthetic_params(4, 128)
    # a law that holds extrapolates within its noise and its coefficients' uncertainty; one
    # that drifts misses by a share of the drift (least squares on the small networks absorbs
    # the rest into phi, psi and p')
    assert ok["sd_invariant"] < 0.05
    assert drift["sd_invariant"] > 3 * ok["sd_invariant"] and drift["sd_invariant"] > 0.1
    # too few configurations for a nested split: nothing is estimated
    tiny = simulate_grid(depths=(2,), widths=(16, 64), n_trains=(1000,), seeds=(0,))
    assert all(v["splits"] == 0 and v["sd_invariant"] == v["sd_dense"] == 0
               for v in evaluate.extrapolation_discrepancy(tiny).values())
