"""Extrapolation evaluation of the least-squares baselines (bayes_prune.evaluate)."""

import numpy as np
import pandas as pd
import pytest

from bayes_prune import evaluate
from bayes_prune.discrepancy import POOL_WEIGHT, REFERENCE_GROUPS, REFERENCE_RATES
from bayes_prune.errors import UserError
from bayes_prune.synthetic import default_truths, simulate_grid


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


def test_what_a_calibrated_band_would_cover_of_these_rows():
    """score's coverage_*_range and coverage_*_rank: draws whose rows are independent give a
    calibrated band a narrow range about its level; draws that share one shift per
    configuration (a few configurations, many points each) give a wide, skewed range, so 100 %
    of such rows covered is what a calibrated band shows most often; a band too narrow for
    the rows ranks near 0, one too wide near 1."""
    rng = np.random.default_rng(2)
    mu = np.log(rng.uniform(0.05, 0.5, 2000))
    held = pd.DataFrame({"test_error": np.exp(mu + 0.1 * rng.standard_normal(mu.size)),
                         "n_test": 10**9})
    alone = evaluate.score(held, mu[:, None] + 0.1 * rng.standard_normal((mu.size, 1000)))
    lo, hi = alone["coverage_90_range"]
    assert 0.87 < lo < 0.9 < hi < 0.93 and 0.05 < alone["coverage_90_rank"] < 0.95
    assert alone["coverage_50_range"][0] < 0.5 < alone["coverage_50_range"][1]
    # three configurations of many points each: the draws' spread is one shift per
    # configuration and draw, the rows' own noise small beside it
    config = np.repeat(np.arange(3), 200)
    shift = rng.standard_normal((3, 1000))
    draws = mu[:600, None] + shift[config] + 0.05 * rng.standard_normal((600, 1000))
    held3 = pd.DataFrame({"test_error": np.exp(mu[:600] + 0.05 * rng.standard_normal(600)),
                          "n_test": 10**9})
    shared = evaluate.score(held3, draws)
    assert shared["coverage_90_range"][0] < 0.7 and shared["coverage_90_range"][1] == 1.0
    assert shared["coverage_90"] == 1.0 and 0.1 < shared["coverage_90_rank"] < 0.9
    narrow = evaluate.score(held, mu[:, None] + 0.03 * rng.standard_normal((mu.size, 1000)))
    wide = evaluate.score(held, mu[:, None] + 0.5 * rng.standard_normal((mu.size, 1000)))
    assert narrow["coverage_90_rank"] == 0.0 and wide["coverage_90_rank"] == 1.0
    point = evaluate.score(held, mu[:, None])
    assert point["coverage_90_range"] is None and point["coverage_90_rank"] is None


def test_by_density_finds_the_interval_where_a_band_misses():
    """A band calibrated everywhere but at the knee (density 0.05-0.2), where the points err
    0.5 less in log than its centre: by_density names that interval, its miss and its
    coverage; the others are near 0 and 90 %; the dense points have their own interval."""
    rng = np.random.default_rng(1)
    density = np.concatenate([0.8 ** rng.integers(1, 30, 6000), np.ones(500)])
    mu = np.log(rng.uniform(0.05, 0.5, density.size))
    knee = (density > 0.05) & (density <= 0.2)
    obs = np.exp(mu - 0.5 * knee + 0.1 * rng.standard_normal(mu.size))
    held = pd.DataFrame({"test_error": obs, "n_test": 10**9, "density": density})
    draws = mu[:, None] + 0.1 * rng.standard_normal((mu.size, 1000))
    rows = {r["density"]: r for r in evaluate.by_density(held, draws)}
    assert list(rows) == list(evaluate.DENSITY_INTERVALS)
    assert sum(r["points"] for r in rows.values()) == len(held)
    assert rows["dense"]["points"] == 500
    assert rows["0.05-0.2"]["log_miss"] == pytest.approx(-0.5, abs=0.02)
    assert rows["0.05-0.2"]["coverage_90"] < 0.01
    for name, r in rows.items():
        assert r["width_90"] == pytest.approx(2 * 1.645 * 0.1, rel=0.05)
        if name != "0.05-0.2":
            assert abs(r["log_miss"]) < 0.02 and r["coverage_90"] == pytest.approx(0.9, abs=0.04)
    point = evaluate.by_density(held, np.log(obs)[:, None])  # one draw: no band
    assert all(r["coverage_90"] is None and r["width_90"] is None for r in point)


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

    def fake_bayes(fit_grid, holdout, diagnostics, **kwargs):  # the sampler: test_fit.py
        seen.update(kwargs)
        diagnostics.update(max_rhat=1.004, min_ess_bulk=512.0, divergences=0, ok=True)
        return np.log(np.tile(holdout["test_error"].to_numpy()[:, None], (1, 10)))

    monkeypatch.setattr(evaluate, "predict_bayes", fake_bayes)
    rc = main(["evaluate", str(tmp_path / "fit.csv"), "--holdout", str(tmp_path / "held.csv"),
               "--methods", "bayes", "lsq", "--p-depends-on-n", "--draws", "300", "--json"])
    assert rc == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert {r["method"] for r in rows} == {"bayes", "lsq"} and len(rows) == 8
    # a fit takes minutes: each method's start and end on stderr, never in the JSON
    assert "bayes: fitting" in out.err and "lsq: done in" in out.err
    # what is given passes through; what is not is left to fit's defaults (None)
    assert seen["p_depends_on_n"] is True and seen["draws"] == 300 and seen["tune"] is None
    bayes = [r for r in rows if r["method"] == "bayes"]
    assert all(r["median_abs_delta"] == 0 and r["coverage_90"] == 1 for r in bayes)
    assert "max_rhat 1.004" in out.err  # and the fit's diagnostics, in the rows too
    assert all(r["max_rhat"] == 1.004 and r["divergences"] == 0 for r in bayes)
    assert all("max_rhat" not in r for r in rows if r["method"] == "lsq")


def _bending_grid(rate):
    # The invariant bends with width: log p' shifted by -rate * log(width / 8)^2, as if the
    # law's psi grew with scale (the reference grids bend so). A law fitted on the narrower
    # networks misses the wider ones by more the wider they are.
    from bayes_prune.law import PruneLaw
    from bayes_prune.synthetic import Truth

    base = default_truths()[("syn-a", "syn-x")]
    frames = []
    for width in (8, 16, 32, 64, 128):
        law = base.law.__dict__ | {"p_prime": base.law.p_prime
                                   * np.exp(-rate * np.log(width / 8) ** 2)}
        frames.append(simulate_grid({("syn-a", "syn-x"): Truth(PruneLaw(**law), base.dense)},
                                    depths=(2, 3, 4), widths=(width,), n_trains=(1000, 4000),
                                    seeds=(0, 1), rel_noise=0.03, rng=width))
    return pd.concat(frames, ignore_index=True)


def test_extrapolation_discrepancy_measures_a_bending_law():
    ok = evaluate.extrapolation_discrepancy(_bending_grid(0.0))["syn-a/syn-x"]
    bent = evaluate.extrapolation_discrepancy(_bending_grid(0.1))["syn-a/syn-x"]
    # cuts: depth 3 (of 2-4), widths 32 and 64 (of 8-128); two n_train: none
    assert ok["splits"] == bent["splits"] == 3 and ok["configurations"] == 28
    assert (ok["max_depth"], ok["max_width"], ok["max_n_train"]) == (4, 128, 4000)
    # a law that holds extrapolates its pruned points within their noise; one that bends
    # misses them by far more
    for d in (ok, bent):  # no split along n_train: it inherits the largest measured rate
        assert d["unmeasured"] == ["n_train"] and d["inherited"] == {"n_train": "other axes"}
        assert d["sd_invariant"]["n_train"] == max(d["sd_invariant"]["depth"],
                                                   d["sd_invariant"]["width"])
    assert ok["sd_invariant"]["width"] < 0.1
    assert bent["sd_invariant"]["width"] > 3 * ok["sd_invariant"]["width"]
    assert bent["sd_invariant"]["width"] > 0.15
    # too few configurations for a nested split: nothing is estimated, the reference grids'
    # population rates stand in
    tiny = simulate_grid(depths=(2,), widths=(16, 64), n_trains=(1000,), seeds=(0,))
    for borrow in (True, False):
        disc = evaluate.extrapolation_discrepancy(tiny, borrow=borrow)
        for v in (v for v in disc.values() if not v.get("borrowed")):
            assert v["splits"] == 0 and set(v["inherited"].values()) == {"reference grids"}
            for name, rates in REFERENCE_RATES.items():
                assert v[name] == pytest.approx(rates)


def _kinked_grid(kink: float = 0.5) -> pd.DataFrame:
    """One group whose law holds up to width 64, its widest networks (128) pruning better:
    log m* shifted by ``kink``; 3 depths x 2 n_train a width, widths 8-128 (cuts at 32 and
    64)."""
    from bayes_prune.law import PruneLaw
    from bayes_prune.synthetic import Truth

    base = default_truths()[("syn-a", "syn-x")]
    frames = []
    for width in (8, 16, 32, 64, 128):
        shift = kink if width == 128 else 0.0
        law = base.law.__dict__ | {"p_prime": base.law.p_prime * np.exp(-shift)}
        frames.append(simulate_grid({("syn-a", "syn-x"): Truth(PruneLaw(**law), base.dense)},
                                    depths=(2, 3, 4), widths=(width,), n_trains=(1000, 4000),
                                    seeds=(0, 1), rel_noise=0.03, rng=width))
    return pd.concat(frames, ignore_index=True)


def test_a_drift_at_the_top_of_the_grid_sets_the_rate_there():
    # Averaged over both width cuts (32 and 64) the kink's miss is diluted by the
    # configurations that followed the law; the top cut (64 -> 128, d = log 2) sees it whole.
    info = evaluate.extrapolation_discrepancy(_kinked_grid())["syn-a/syn-x"]
    top = info["top"]["sd_invariant"]["width"]
    assert 0.5 < top < 1.0  # about 0.5 / log 2
    assert info["own"]["sd_invariant"]["width"] == top
    # the same grid without the kink: the top cut measures nothing beyond the noise
    flat = evaluate.extrapolation_discrepancy(_bending_grid(0.0))["syn-a/syn-x"]
    assert flat["top"]["sd_invariant"]["width"] < 0.1
    # the kink's sign: the widest networks prune better, so the band leans that way by the
    # top cut's signed slope (about 0.5 / log 2); pruning worse, it does not lean
    assert 0.5 < info["own"]["skew_invariant"]["width"] < 1.0
    assert flat["own"]["skew_invariant"]["width"] < 0.1
    worse = evaluate.extrapolation_discrepancy(_kinked_grid(-0.5))["syn-a/syn-x"]
    assert worse["own"]["skew_invariant"]["width"] == 0.0
    assert worse["own"]["sd_invariant"]["width"] > 0.5


def test_a_top_cut_rate_weighs_by_the_top_cut_evidence_alone():
    """The kink's rate is the top cut's, measured by its 6 configurations at d = log 2 alone:
    that is the evidence its pooling weighs, not the inner cut's too. The rates measured are
    the same either way; an axis whose all-cut rate rules keeps every cut's evidence."""
    grid = _kinked_grid()
    other = simulate_grid(depths=(2, 3, 4), widths=(8, 16, 32, 64, 128), n_trains=(1000, 4000),
                          seeds=(0, 1), rel_noise=0.03)
    grid = pd.concat([grid, other[other["arch"] != "syn-a"]], ignore_index=True)
    now = evaluate.extrapolation_discrepancy(grid)
    before = evaluate.extrapolation_discrepancy(grid, rate_evidence=False)
    kink, was = now["syn-a/syn-x"], before["syn-a/syn-x"]
    assert kink["own"] == was["own"]
    assert kink["evidence"]["width"] == pytest.approx(6 * np.log(2) ** 2)
    assert was["evidence"]["width"] == pytest.approx(6 * (np.log(2) ** 2 + np.log(4) ** 2)
                                                     + 6 * np.log(2) ** 2)
    share = kink["evidence"]["width"] / (POOL_WEIGHT + kink["evidence"]["width"])
    assert kink["pooled"]["width"] == pytest.approx(share)
    assert share < was["pooled"]["width"]
    for g, info in now.items():  # depth has one cut: its evidence is every cut's, as before
        assert info["evidence"]["depth"] == before[g]["evidence"]["depth"]


def test_the_lean_is_never_below_the_populations():
    """A group whose own top cut shows no lean (its widest networks follow the law) still leans
    by the population's root mean square: the drift towards pruning better shows above a grid's
    sizes, where its own splits cannot look. A group that leans more keeps its own, pooled.
    (One population for all here; by default it is its architecture's first, the same floor.)"""
    grid = _kinked_grid(1.0)
    flat = simulate_grid(depths=(2, 3, 4), widths=(8, 16, 32, 64, 128), n_trains=(1000, 4000),
                         seeds=(0, 1), rel_noise=0.03)
    grid = pd.concat([grid, flat[flat["arch"] != "syn-a"]], ignore_index=True)
    disc = evaluate.extrapolation_discrepancy(grid, arch_pool=False)
    measured = [i["own"]["skew_invariant"]["width"] for i in disc.values()]
    pop = float(np.sqrt(np.mean(np.square(measured))))
    kink = disc.pop("syn-a/syn-x")
    assert kink["own"]["skew_invariant"]["width"] > 1.0 > 0.1 > max(
        i["own"]["skew_invariant"]["width"] for i in disc.values())
    for info in disc.values():
        assert info["skew_invariant"]["width"] == pytest.approx(pop)
    assert kink["skew_invariant"]["width"] > pop


def test_the_rates_table_fit_prints():
    """One row per fitted group and axis, the three rates as stored, where each came from;
    borrowed reference groups are named apart, not tabled."""
    from bayes_prune.discrepancy import rates_table

    grid = _kinked_grid()
    disc = evaluate.extrapolation_discrepancy(grid, borrow=True)
    table = rates_table(disc)
    assert list(table.columns) == ["group", "axis", "largest", "dense", "invariant", "lean",
                                   "source"]
    assert table["group"].unique().tolist() == ["syn-a/syn-x"]
    mine = disc["syn-a/syn-x"]
    for row in table.itertuples():
        assert row.largest == mine[f"max_{row.axis}"]
        assert (row.dense, row.invariant, row.lean) == (
            mine["sd_dense"][row.axis], mine["sd_invariant"][row.axis],
            mine["skew_invariant"][row.axis])
    source = dict(zip(table["axis"], table["source"], strict=True))
    assert source["n_train"] == "inherited: reference grids"  # two values: no split
    assert source["width"].endswith("% its own")


def test_interior_configurations_are_held_out_between_trained_ones():
    grid = simulate_grid(depths=(2, 3, 4), widths=(16, 32, 64, 128), n_trains=(1000, 4000),
                         seeds=(0,), rel_noise=0.03)
    fit, held = evaluate.interior_configs(grid, 2, seed=1)
    keys = ["arch", "task", "depth", "width", "n_train"]
    cfg = held[keys].drop_duplicates()
    assert len(cfg) == 2 * grid.groupby(["arch", "task"]).ngroups
    assert set(cfg["depth"]) == {3} and set(cfg["width"]) <= {32, 64}  # n_train: 2 values
    assert fit.merge(cfg, on=keys).empty and len(fit) + len(held) == len(grid)
    with pytest.raises(UserError, match="interior configuration"):
        evaluate.interior_configs(grid, 20)


def test_leave_configs_out_says_which_configurations_it_held_out(tmp_path, capsys):
    import json

    from bayes_prune.cli import main
    from bayes_prune.grid import write_grid

    grid = simulate_grid(depths=(2, 3, 4), widths=(16, 32, 64, 128), n_trains=(1000, 4000),
                         seeds=(0,), rel_noise=0.03)
    write_grid(grid, tmp_path / "g.csv")
    assert main(["evaluate", str(tmp_path / "g.csv"), "--leave-configs-out", "1",
                 "--methods", "lsq", "--json"]) == 0
    out = capsys.readouterr()
    named = out.err.split("held out (")[1].splitlines()[0]
    held = {r["arch"] + "/" + r["task"] for r in json.loads(out.out)}
    assert named.startswith(f"{len(held)} interior configuration(s), --seed 0): ")
    assert all(g in named for g in held) and named.count("depth 3 width") == len(held)


def test_leave_group_out_fits_on_the_other_groups_held_out_rows(split, monkeypatch):
    fit, held = split
    seen = []

    def spy(fit_grid, holdout, **kw):
        seen.append((len(fit_grid), holdout.groupby(["arch", "task"]).ngroups))
        return [{"arch": a, "task": t, "method": "lsq"} for a, t in
                holdout[["arch", "task"]].drop_duplicates().itertuples(index=False)]

    monkeypatch.setattr(evaluate, "evaluate", spy)
    rows = evaluate.leave_group_out(fit, held, methods=("lsq",))
    assert len(rows) == 4 and {r["arch"] + r["task"] for r in rows} == {
        a + t for a, t in held[["arch", "task"]].drop_duplicates().itertuples(index=False)}
    # each fit sees the fitting grid plus three quarters of the held-out rows
    assert all(n == len(fit) + 3 * len(held) // 4 and g == 1 for n, g in seen)


def test_an_axis_the_grid_cannot_split_inherits_a_measured_rate():
    """Two depths cannot be split (a cut keeps two values fitted and one beyond): depth's
    extrapolation rate is not 0 but taken from what was measured elsewhere."""
    from bayes_prune.discrepancy import extrapolation_discrepancy
    from bayes_prune.synthetic import simulate_grid

    grid = simulate_grid(depths=(2, 3), widths=(16, 32, 64, 128), n_trains=(1000, 2000, 4000),
                         seeds=(0,), rounds=12)
    for info in extrapolation_discrepancy(grid).values():
        assert info["unmeasured"] == ["depth"]
        assert info["inherited"]["depth"].startswith(("population of", "other axes"))
        measured = [info["sd_invariant"][a] for a in ("width", "n_train")]
        assert info["sd_invariant"]["depth"] > 0 or max(measured) == 0


def test_a_grid_that_measures_no_drift_takes_the_reference_grids_rates():
    """One network per group (no axis can be split): the bands beyond such a grid are not left
    as narrow as inside it; every axis takes the reference grids' population rate."""
    from bayes_prune.discrepancy import extrapolation_discrepancy

    grid = simulate_grid(depths=(2,), widths=(64,), n_trains=(4000,), seeds=(0, 1), rounds=12)
    for info in extrapolation_discrepancy(grid).values():
        assert sorted(info["unmeasured"]) == sorted(("depth", "width", "n_train"))
        assert set(info["inherited"].values()) == {"reference grids"}
        for name in ("sd_dense", "sd_invariant"):
            assert info[name] == pytest.approx(REFERENCE_RATES[name])


def test_a_fit_borrows_the_reference_groups_it_does_not_hold():
    """Borrowing (fit --borrow-drift), a one-group grid pools its drift with the four
    reference groups' (their own rates, as measured on the reference grids), each draw taking
    its rates from one member; a group the grid holds under a reference group's name is its
    own, never borrowed."""
    from bayes_prune.discrepancy import POOL_WEIGHT, extrapolation_discrepancy

    grid = _kinked_grid()
    alone = extrapolation_discrepancy(grid)["syn-a/syn-x"]
    disc = extrapolation_discrepancy(grid, borrow=True)
    assert {g for g, i in disc.items() if i.get("borrowed")} == set(REFERENCE_GROUPS)
    mine = disc["syn-a/syn-x"]
    assert mine["own"] == alone["own"] and mine["evidence"] == alone["evidence"]
    for name in ("sd_dense", "sd_invariant"):
        for axis, k in mine[name].items():
            ev = mine["evidence"][axis]  # 0 for n_train (two values): its population alone
            members = [r[name][axis] for r in REFERENCE_GROUPS.values()]
            members += [mine["own"][name][axis]] if ev > 0 else []
            share = ev / (POOL_WEIGHT + ev)
            want = share * mine["own"][name][axis] ** 2 + (1 - share) * np.mean(
                np.square(members))
            assert k == pytest.approx(np.sqrt(want))
    # a group the grid holds under a reference group's name: its own measurement, and beside
    # it the reference's, since the reference grids reach width 256 and this grid stops at 128
    renamed = grid.assign(arch="mlp", task="mnist1d")
    held = extrapolation_discrepancy(renamed, borrow=True)
    assert "borrowed" not in held["mlp/mnist1d"]
    assert {g for g, i in held.items() if i.get("borrowed")} == (
        set(REFERENCE_GROUPS) - {"mlp/mnist1d"}) | {"mlp/mnist1d (reference)"}
    assert held["mlp/mnist1d (reference)"]["own"]["sd_invariant"] == \
        REFERENCE_GROUPS["mlp/mnist1d"]["sd_invariant"]
    # a grid that reaches the reference's sizes on every axis borrows nothing of its own group
    wide = renamed.assign(width=renamed["width"] * 2, n_train=renamed["n_train"] * 4)
    assert "mlp/mnist1d (reference)" not in extrapolation_discrepancy(wide, borrow=True)


def test_a_measurement_that_saw_the_held_out_rows_is_not_borrowed_to_score_them():
    """Scoring held-out rows that lie inside a reference group's sizes (a split of the
    reference grids' own rows), that group's reference measurement, which may have seen them,
    is left out, whether the grid holds the group or not; rows beyond its sizes keep it. A
    stored discrepancy pooled again without it (``without_seen``, what ``evaluate`` scores
    with) equals the one measured without it."""
    from bayes_prune.discrepancy import extrapolation_discrepancy, without_seen
    from bayes_prune.evaluate import as_scored

    grid = _kinked_grid().assign(arch="mlp", task="mnist1d")
    inside = grid.head(3).assign(width=256.0, depth=4.0, n_train=4000.0)
    beyond = inside.assign(depth=5.0)
    other = inside.assign(arch="cnn", task="mnist1d", width=48.0)
    full = extrapolation_discrepancy(grid, borrow=True)
    for rows, gone in ((inside, "mlp/mnist1d (reference)"), (other, "cnn/mnist1d"),
                       (beyond, None)):
        disc = extrapolation_discrepancy(grid, borrow=True, held_out=rows)
        assert set(disc) == set(full) - {gone}
        again = without_seen(full, rows)
        assert set(again) == set(disc)
        for g, info in disc.items():
            for name in ("sd_dense", "sd_invariant", "skew_invariant"):
                assert again[g][name] == pytest.approx(info[name], rel=1e-12)
        post = type("P", (), {"meta": {"discrepancy": full}})()
        assert (as_scored(post, rows) is post) == (gone is None)
    assert without_seen(full, beyond) is full
    # a discrepancy pooled with one population for all is pooled again the same way
    flat = extrapolation_discrepancy(grid, borrow=True, arch_pool=False)
    want = extrapolation_discrepancy(grid, borrow=True, arch_pool=False, held_out=other)
    again = without_seen(flat, other)
    for g, info in want.items():
        assert again[g]["sd_invariant"] == pytest.approx(info["sd_invariant"], rel=1e-12)


def test_each_groups_rows_are_scored_without_only_their_own_groups_measurement():
    """Held-out rows of two reference groups at once: each group's rows are predicted without
    its own group's reference measurement and with the other's (``unseen_log_draws``), as if
    each were held out alone."""
    from bayes_prune.discrepancy import extrapolation_discrepancy
    from bayes_prune.evaluate import unseen_log_draws

    class Fake:  # a posterior whose draws say which borrowed measurements it was given
        def __init__(self, disc):
            self.meta = {"discrepancy": disc}

        def predict_draws(self, rows, band, seed=0):
            d = self.meta["discrepancy"]
            v = 2.0 * ("mlp/mnist1d (reference)" in d) + 0.5 * ("cnn/mnist1d" in d) + 1.0
            return np.full((len(rows), 3), v)

    grid = _kinked_grid().assign(arch="mlp", task="mnist1d")
    post = Fake(extrapolation_discrepancy(grid, borrow=True))
    rows = grid.head(4).assign(width=64.0)
    rows.loc[rows.index[2:], ["arch", "task", "width"]] = ["cnn", "mnist1d", 32.0]
    said = []
    got = np.exp(unseen_log_draws(post, rows.iloc[::-1], log=said.append))  # any row order
    assert len(said) == 1 and "(cnn/mnist1d, mlp/mnist1d (reference))" in said[0]
    np.testing.assert_allclose(got[:2], 3.0)  # cnn rows: the MLP's reference kept
    np.testing.assert_allclose(got[2:], 1.5)  # mlp rows: the CNN's kept, their own not
    np.testing.assert_allclose(np.exp(unseen_log_draws(post, rows.head(2))), 1.5)


def test_rates_are_pooled_across_groups():
    """A group's rate is its own measurement shrunk toward the population's: all own at weight
    0, the population's root mean square at a huge weight, and a group that cannot split an
    axis takes the population's rate whatever the weight. (One population for all; the
    architecture layer, the default, is tested below.)"""
    from bayes_prune.discrepancy import extrapolation_discrepancy
    from bayes_prune.synthetic import simulate_grid

    grid = simulate_grid(depths=(2, 3, 4), widths=(16, 32, 64, 128), n_trains=(1000, 4000),
                         seeds=(0,), rel_noise=0.03)
    short = grid[(grid["arch"] == "syn-a") & (grid["task"] == "syn-x")]
    grid = pd.concat([grid.drop(short.index), short[short["depth"] < 4]], ignore_index=True)
    own = extrapolation_discrepancy(grid, pool_weight=0.0, arch_pool=False)
    flat = extrapolation_discrepancy(grid, pool_weight=1e12, arch_pool=False)
    for name in ("sd_dense", "sd_invariant"):
        for axis in ("depth", "width"):
            measured = [i["own"][name][axis] for i in own.values()
                        if i["evidence"][axis] > 0]
            rms = float(np.sqrt(np.mean(np.square(measured))))
            for g, info in own.items():
                assert info["own"] == flat[g]["own"]  # pooling never changes what was measured
                if info["evidence"][axis] > 0:
                    assert info[name][axis] == pytest.approx(info["own"][name][axis])
                    assert flat[g][name][axis] == pytest.approx(rms)
                else:  # syn-a/syn-x's depths 2-3: no split along depth
                    assert g == "syn-a/syn-x" and axis == "depth"
                    assert info["inherited"]["depth"] == "population of 3 group(s)"
                    assert info[name][axis] == pytest.approx(rms)
                    assert flat[g][name][axis] == pytest.approx(rms)


def _measured(k: float, evidence: float) -> dict:
    """A group's entry of a discrepancy before pooling: every rate ``k`` on every axis."""
    from bayes_prune.grid import RATES, SIZE_AXES

    return {**{name: dict.fromkeys(SIZE_AXES, k) for name in RATES},
            "evidence": dict.fromkeys(SIZE_AXES, evidence)}


def test_with_arch_pool_a_groups_population_is_its_architectures_first():
    """``arch_pool`` (the default): an unmeasured group inherits the
    mean square of the other groups of its architecture, shrunk to everyone's by one
    pseudo-group; a group of an architecture nobody else has gets everyone's; without it, one
    population for all. Each draw's rates come from one group with the same weights, so the
    draws' mean square is the pooled rate's."""
    from bayes_prune.beyond import Beyond
    from bayes_prune.drift_pool import ARCH_WEIGHT, pool

    def groups():
        return {"cnn/a": _measured(3.0, 2.0), "cnn/b": _measured(1.0, 2.0),
                "mlp/a": _measured(0.5, 2.0), "mlp/b": _measured(0.0, 0.0),
                "resnet/a": _measured(0.0, 0.0)}

    pooled = pool(groups(), POOL_WEIGHT, arch_pool=True)
    flat = pool(groups(), POOL_WEIGHT, arch_pool=False)
    everyone = np.mean([9.0, 1.0, 0.25])
    share = 1 / (1 + ARCH_WEIGHT)  # mlp/b has one other MLP that measured the axes
    assert pooled["mlp/b"]["arch_share"]["depth"] == pytest.approx(share)
    for name in ("sd_dense", "sd_invariant", "skew_invariant"):
        assert pooled["mlp/b"][name]["width"] == pytest.approx(
            np.sqrt(share * 0.25 + (1 - share) * everyone))
        assert pooled["resnet/a"][name]["width"] == pytest.approx(np.sqrt(everyone))
        assert flat["mlp/b"][name]["width"] == pytest.approx(np.sqrt(everyone))
    # a measured group: its own share as before, the rest its architecture's first
    own = 2.0 / (POOL_WEIGHT + 2.0)
    assert pooled["cnn/b"]["sd_dense"]["n_train"] == pytest.approx(np.sqrt(
        own * 1.0 + (1 - own) * (share * 9.0 + (1 - share) * everyone)))
    configs = pd.DataFrame({"arch": ["mlp"], "task": ["b"], "depth": [1], "width": [8],
                            "n_train": [100]})
    beyond = Beyond({"discrepancy": pooled}, configs, 200_000)
    for group in ("mlp/b", "cnn/b", "resnet/a"):
        draws = beyond.drift_rates(group, np.random.default_rng(0))["sd_invariant"]["depth"]
        assert np.mean(draws.astype(float) ** 2) == pytest.approx(
            pooled[group]["sd_invariant"]["depth"] ** 2, rel=0.02)



def test_the_lean_alone_by_architecture_or_relative_to_the_rate():
    """Comparison rules (none the default): ``arch_pool="lean"`` gives the
    lean alone its architecture's population first (the rates stay everyone's);
    ``lean_relative`` makes the population's lean, and its floor, the population's ratio of
    mean squared lean to mean squared invariant rate times the group's own pooled rate."""
    from bayes_prune.drift_pool import ARCH_WEIGHT, pool

    def groups():
        g = {"cnn/a": _measured(3.0, 2.0), "mlp/a": _measured(0.5, 2.0),
             "mlp/b": _measured(0.0, 0.0)}
        g["cnn/a"]["skew_invariant"] = dict.fromkeys(g["cnn/a"]["skew_invariant"], 4.0)
        return g

    flat = pool(groups(), POOL_WEIGHT, arch_pool=False)
    lean = pool(groups(), POOL_WEIGHT, arch_pool="lean")
    rel = pool(groups(), POOL_WEIGHT, arch_pool=False, lean_relative=True)
    k2, s2 = np.mean([9.0, 0.25]), np.mean([16.0, 0.25])  # everyone's mean squares
    share = 1 / (1 + ARCH_WEIGHT)
    assert "arch_share" not in lean["mlp/b"]
    assert lean["mlp/b"]["sd_invariant"]["depth"] == pytest.approx(np.sqrt(k2))
    assert lean["mlp/b"]["skew_invariant"]["depth"] == pytest.approx(
        np.sqrt(share * 0.25 + (1 - share) * s2))
    assert flat["mlp/b"]["skew_invariant"]["depth"] == pytest.approx(np.sqrt(s2))
    # mlp/b measured nothing: its rate is everyone's, so its lean is everyone's ratio at it
    assert rel["mlp/b"]["skew_invariant"]["width"] == pytest.approx(np.sqrt(s2))
    # mlp/a: its own rate pulls its pooled rate, and with it its lean, below everyone's
    own = 2.0 / (POOL_WEIGHT + 2.0)
    rate2 = own * 0.25 + (1 - own) * k2
    assert rel["mlp/a"]["sd_invariant"]["width"] == pytest.approx(np.sqrt(rate2))
    assert rel["mlp/a"]["skew_invariant"]["width"] == pytest.approx(np.sqrt(s2 / k2 * rate2))
    assert rel["mlp/a"]["skew_invariant"]["width"] < flat["mlp/a"]["skew_invariant"]["width"]
    rates = pool(groups(), POOL_WEIGHT, arch_pool="rates")  # the complement of "lean"
    assert rates["mlp/b"]["arch_share"]["depth"] == pytest.approx(share)
    assert rates["mlp/b"]["sd_invariant"]["depth"] == pytest.approx(
        np.sqrt(share * 0.25 + (1 - share) * k2))
    assert rates["mlp/b"]["skew_invariant"]["depth"] == pytest.approx(np.sqrt(s2))

def test_a_configuration_that_barely_feels_the_invariant_gets_no_wild_shift():
    """Twelve rounds leave some configurations on their dense plateau, where the law's slope in
    log m* is ~0: the shift's ridge keeps their h, and so every pooled rate, finite and sane
    (without it one group measured 26,339 per unit of log width)."""
    from bayes_prune.discrepancy import extrapolation_discrepancy
    from bayes_prune.synthetic import simulate_grid

    grid = simulate_grid(depths=(2, 3), widths=(16, 32, 64, 128), n_trains=(1000, 2000, 4000),
                         seeds=(0,), rounds=12)
    for info in extrapolation_discrepancy(grid).values():
        assert max(info["sd_invariant"].values()) < 3 and max(info["sd_dense"].values()) < 3
