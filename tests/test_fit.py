"""The hierarchical model end to end on a small synthetic grid: fit, save, load, query,
design, and the command line around them (bayes_prune.fit, bayes_prune.posterior)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bayes_prune.cli import main
from bayes_prune.discrepancy import REFERENCE_RATES
from bayes_prune.errors import UserError
from bayes_prune.grid import read_grid, write_grid
from bayes_prune.posterior import FORMAT, Posterior, hdi
from bayes_prune.synthetic import default_truths, simulate_grid, synthetic_params

pytestmark = pytest.mark.slow
UNSEEN = ("syn-b", "syn-y")  # left out of the fit: predicted by the crossed pooling


def _grid(seed=3):
    truths = {k: v for k, v in default_truths().items() if k != UNSEEN}
    return simulate_grid(truths, depths=(2, 4), widths=(16, 64), n_trains=(1000, 4000),
                         seeds=(0, 1), rounds=10, prune_fraction=0.6, rel_noise=0.03,
                         n_test=2000, rng=seed)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    write_grid(_grid(), d / "grid.csv")
    rc = main(["fit", str(d / "grid.csv"), "-o", str(d / "post.nc"), "--draws", "150",
               "--tune", "300", "--chains", "2", "--seed", "1", "--quiet"])
    assert rc == 0
    return d


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "bayes_prune.cli", *map(str, args)],
                          capture_output=True, text=True)


def test_posterior_file_holds_draws_settings_and_diagnostics(fitted):
    post = Posterior.load(fitted / "post.nc")
    assert post.meta["format"] == FORMAT
    assert post.n_draws == 300 and post.draws["theta"].shape == (300, 3, len(post.coefs))
    assert post.meta["settings"]["seed"] == 1 and post.meta["provenance"]["points"] == len(_grid())
    assert set(post.diagnostics) >= {"max_rhat", "min_ess_bulk", "min_ess_tail", "divergences",
                                     "ok"}
    table = post.coefficient_table()
    assert set(table["coef"]) >= {"gamma", "p_prime", "phi", "psi", "eps_up"}
    assert (table["lower"] <= table["median"]).all() and (table["median"] <= table["upper"]).all()


def test_query_json_contract_and_cross_product(fitted):
    out = _cli("query", fitted / "post.nc", "--arch", "syn-a", "--task", "syn-x", "--depth", 2, 3,
               "--width", 32, "--n-train", 2000, "--density", 1, 0.01, "--json",
               "--params-total", *synthetic_params(np.array([2, 3]), 32))
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 4
    keys = {"arch", "task", "depth", "width", "n_train", "density", "mean", "median", "lower",
            "upper", "level", "band"}
    for r in rows:
        assert keys <= set(r) and r["band"] == "expected" and r["level"] == 0.9
        assert 0 < r["lower"] <= r["median"] <= r["upper"] < 1
    by = {(r["depth"], r["density"]): r for r in rows}
    assert by[(2, 0.01)]["median"] > by[(2, 1.0)]["median"]  # pruning hurts
    assert {r["beyond"] for r in rows} == {""} and "note:" not in out.stderr  # inside the grid


def test_query_flags_the_rows_beyond_the_grid(fitted):
    out = _cli("query", fitted / "post.nc", "--arch", "syn-a", "--task", "syn-x", "--depth", 4,
               "--width", 64, 256, "--n-train", 4000, 8000, "--density", 0.05, "--json",
               "--params-total", *synthetic_params(4, np.array([64, 256])))
    assert out.returncode == 0, out.stderr
    beyond = [r["beyond"] for r in json.loads(out.stdout)]
    assert beyond == ["", "n_train", "width", "width,n_train"]
    assert "note: 3 of 4 row(s) lie beyond their group's grid" in out.stderr
    rows = pd.DataFrame({"arch": [UNSEEN[0]], "task": [UNSEEN[1]], "depth": [2], "width": [16],
                         "n_train": [1000], "density": [0.1],
                         "params_total": [synthetic_params(2, 16)]})
    post = Posterior.load(fitted / "post.nc")
    assert post.beyond_grid(rows).tolist() == ["pair never fitted"]


def test_query_imports_neither_torch_nor_pymc(fitted):
    code = ("import sys, json\nfrom bayes_prune.cli import main\n"
            f"rc = main(['query', {str(fitted / 'post.nc')!r}, '--arch', 'syn-a', '--task', "
            "'syn-x', '--depth', '2', '--width', '16', '--n-train', '1000', '--density', '0.1', "
            "'--json', '--params-total', '1000'])\n"
            "print(json.dumps([rc, 'torch' in sys.modules, 'pymc' in sys.modules, "
            "'pytensor' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, False, False, False]


def test_prediction_band_is_wider_and_unseen_pair_is_wider_still(fitted):
    post = Posterior.load(fitted / "post.nc")
    rows = pd.DataFrame({"arch": ["syn-b", "syn-b"], "task": ["syn-x", "syn-y"], "depth": 3,
                         "width": 32, "n_train": 2000, "density": 0.05,
                         "params_total": synthetic_params(3, 32)})
    exp = post.summary(rows, band="expected")
    pred = post.summary(rows, band="prediction")
    width = lambda t: np.log(t["upper"] / t["lower"]).to_numpy()  # noqa: E731
    assert width(pred)[0] > width(exp)[0]  # a next run adds its seed's and its test set's noise
    assert width(exp)[1] > 2 * width(exp)[0]  # syn-b/syn-y was never fitted
    p = post.summary(rows, below=0.5)["p_below"]
    assert ((0 <= p) & (p <= 1)).all()


def test_design_returns_fewest_weights_meeting_the_target(fitted):
    out = _cli("design", fitted / "post.nc", "--target-error", 0.3, "--prob", 0.8, "--json",
               "--top", 50)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows and all(r["p_meets"] >= 0.8 for r in rows)
    nz = [r["params_nonzero"] for r in rows]
    assert nz == sorted(nz)


@pytest.mark.parametrize("kind", ["missing", "truncated", "foreign", "csv"])
def test_bad_posterior_files_exit_nonzero_with_one_line(fitted, tmp_path, kind):
    path = tmp_path / "p.nc"
    if kind == "truncated":
        path.write_bytes((fitted / "post.nc").read_bytes()[:2000])
    elif kind == "foreign":
        import xarray as xr

        xr.Dataset({"x": ("a", np.arange(3.0))}).to_netcdf(path, group="posterior",
                                                           engine="h5netcdf")
    elif kind == "csv":
        path.write_text("a,b\n1,2\n")
    out = _cli("query", path, "--arch", "syn-a", "--task", "syn-x", "--depth", 2, "--width", 16,
               "--n-train", 1000, "--density", 0.5)
    assert out.returncode == 2
    assert out.stderr.startswith("bayes-prune: error: ") and len(out.stderr.splitlines()) == 1


def test_query_outside_the_fitted_groups_is_refused(fitted):
    out = _cli("query", fitted / "post.nc", "--arch", "resnet", "--task", "syn-x", "--depth", 2,
               "--width", 16, "--n-train", 1000, "--density", 0.5)
    assert out.returncode == 2 and "cannot be predicted" in out.stderr
    out = _cli("query", fitted / "post.nc", "--arch", "syn-a", "--task", "syn-x", "--depth", 2,
               "--width", 16, "--n-train", 1000, "--density", 0)
    assert out.returncode == 2 and "density" in out.stderr


def test_configurations_beyond_the_grid_widen_by_the_stored_discrepancy(fitted):
    post = Posterior.load(fitted / "post.nc")
    stored = post.meta["discrepancy"]["syn-a/syn-x"]
    assert (stored["max_depth"], stored["max_width"], stored["max_n_train"]) == (4, 64, 4000)
    # the largest trained network, and one 4x wider; a dense and a pruned point of each (the
    # grid has two depths, two widths, two n_train: too few to split, nothing is measured, so
    # every axis takes the reference grids' rates, and says so)
    assert stored["splits"] == 0
    assert stored["sd_dense"] == pytest.approx(REFERENCE_RATES["sd_dense"])
    assert stored["sd_invariant"] == pytest.approx(REFERENCE_RATES["sd_invariant"])
    assert set(stored["inherited"].values()) == {"reference grids"}
    rows = pd.DataFrame({"arch": "syn-a", "task": "syn-x", "depth": 4, "n_train": 4000,
                         "width": [64, 64, 256, 256], "density": [1.0, 0.02, 1.0, 0.02]})
    rows["params_total"] = synthetic_params(4, rows["width"])
    width = lambda t: np.log(t["upper"] / t["lower"]).to_numpy()  # noqa: E731

    def rates(dense, invariant):  # per axis; only width is beyond the grid here
        post.meta["discrepancy"] = {"syn-a/syn-x": {
            **stored, "sd_dense": {"depth": 9.0, "width": dense, "n_train": 9.0},
            "sd_invariant": {"depth": 9.0, "width": invariant, "n_train": 9.0},
            "skew_invariant": {"depth": 9.0, "width": 0.0, "n_train": 9.0}}}
        return post.summary(rows, band="prediction")
    none, dense, shift = rates(0.0, 0.0), rates(0.3, 0.0), rates(0.0, 1.0)
    pd.testing.assert_frame_equal(none.iloc[:2], dense.iloc[:2])  # inside the grid: unchanged
    pd.testing.assert_frame_equal(none.iloc[:2], shift.iloc[:2])
    assert width(dense)[2] > 1.3 * width(none)[2]  # dense offset: sd 0.3 * log 4 = 0.42
    assert width(shift)[3] > 1.3 * width(none)[3]  # an invariant shift moves the pruned point
    assert width(shift)[2] == pytest.approx(width(none)[2], rel=0.1)  # not the dense one


@pytest.mark.parametrize("fused", ["0", "1"])
def test_the_skew_widens_a_band_beyond_the_grid_towards_pruning_better_only(fitted, fused,
                                                                             monkeypatch):
    """Above its median the invariant's offset takes the skew's variance too: beyond the grid
    the pruned point's band reaches lower errors and its upper bound stays; the configurations
    inside the grid are untouched, and so, nearly, is the dense point. Either path."""
    from bayes_prune import kernels

    if fused == "1":
        pytest.importorskip("jax")
        monkeypatch.setattr(kernels, "MIN_ELEMENTS", 1)
    monkeypatch.setenv("BAYES_PRUNE_FUSED", fused)
    post = Posterior.load(fitted / "post.nc")
    stored = post.meta["discrepancy"]["syn-a/syn-x"]
    assert set(stored["skew_invariant"]) == {"depth", "width", "n_train"}
    rows = pd.DataFrame({"arch": "syn-a", "task": "syn-x", "depth": 4, "n_train": 4000,
                         "width": [64, 64, 256, 256], "density": [1.0, 0.002, 1.0, 0.002]})
    rows["params_total"] = synthetic_params(4, rows["width"])

    def skew(s):  # only width is beyond the grid here
        post.meta["discrepancy"] = {"syn-a/syn-x": {
            **stored, "sd_dense": {"depth": 0.0, "width": 0.2, "n_train": 0.0},
            "sd_invariant": {"depth": 0.0, "width": 0.5, "n_train": 0.0},
            "skew_invariant": {"depth": 0.0, "width": s, "n_train": 0.0}}}
        return post.predict_draws(rows, band="expected")
    none, leant = skew(0.0), skew(2.0)
    np.testing.assert_array_equal(none[:2], leant[:2])  # inside the grid: the same draws
    # the dense point beyond: an offset of m* barely moves it (the plateau is not quite flat)
    assert np.median(leant[2]) == pytest.approx(np.median(none[2]), rel=0.02)
    was, now = (np.quantile(d[3], [0.05, 0.5, 0.95]) for d in (none, leant))
    assert now[0] < 0.9 * was[0]  # towards lower error: further (to the dense plateau)
    assert now[2] == pytest.approx(was[2], rel=0.02)  # the upper bound stays
    # per draw: the same error where the offset's normal is below 0 (half the draws), a lower
    # one where it is above
    same = np.isclose(leant[3], none[3], rtol=1e-6)
    assert 0.4 < same.mean() < 0.6
    assert (leant[3][~same] < none[3][~same]).all()
    # a posterior stored before the skew was measured answers as if it were 0
    post.meta["discrepancy"] = {"syn-a/syn-x": {
        k: v for k, v in post.meta["discrepancy"]["syn-a/syn-x"].items() if k != "skew_invariant"}}
    post.meta["discrepancy"]["syn-a/syn-x"]["own"] = {
        k: v for k, v in stored["own"].items() if k != "skew_invariant"}
    np.testing.assert_array_equal(post.predict_draws(rows, band="expected"), skew(0.0))


def test_a_borrowed_drift_reaches_the_bands_beyond_the_grid(fitted):
    """The discrepancy `fit` stores by default (`--borrow-drift`): the reference groups join
    the population, each draw beyond the grid takes one member's rates (so some draws drift
    like the Fashion CNN, 3.5 per log unit of depth), the bands stay finite, and nothing inside
    the grid moves against the grid's own drift alone (`--no-borrow-drift`)."""
    from bayes_prune.discrepancy import REFERENCE_GROUPS, extrapolation_discrepancy

    post = Posterior.load(fitted / "post.nc")
    grid = read_grid(fitted / "grid.csv")
    rows = pd.DataFrame({"arch": "syn-a", "task": "syn-x", "depth": [4, 16], "n_train": 4000,
                         "width": 64, "density": 0.02})
    rows["params_total"] = synthetic_params(rows["depth"], 64)
    assert post.meta["discrepancy"] == extrapolation_discrepancy(grid, borrow=True)
    assert {g for g, i in post.meta["discrepancy"].items() if i.get("borrowed")} == \
        set(REFERENCE_GROUPS)
    post.meta["discrepancy"] = extrapolation_discrepancy(grid, borrow=False)
    alone = post.summary(rows, band="prediction")
    post.meta["discrepancy"] = extrapolation_discrepancy(grid, borrow=True)
    drift = post.beyond.drift_rates("syn-a/syn-x", np.random.default_rng(0))
    assert drift["sd_invariant"]["depth"].max() == pytest.approx(
        REFERENCE_GROUPS["cnn/fashion-mnist"]["sd_invariant"]["depth"], rel=1e-6)
    borrowed = post.summary(rows, band="prediction")
    pd.testing.assert_frame_equal(alone.iloc[:1], borrowed.iloc[:1])  # depth 4: in the grid
    assert np.isfinite(borrowed[["lower", "upper"]].to_numpy()).all()
    # this grid splits nothing: alone, depth 16 drifts at the reference groups' root mean
    # square; borrowed, at one group's rate per draw (the same mean square, another shape)
    width = np.log(borrowed["upper"] / borrowed["lower"]).to_numpy()
    assert width[1] > 2 * width[0]
    assert width[1] != pytest.approx(np.log(alone["upper"] / alone["lower"])[1], rel=1e-3)


def test_a_configuration_off_the_grid_corner_lies_beyond_it(fitted):
    """On a grid that is no full cross product (here: without its deep wide networks), a
    configuration as deep as the deep ones and as wide as the wide ones lies beyond the grid,
    though no axis' largest value is exceeded: its band widens by the discrepancy and `beyond`
    names the axes on which its nearest trained configuration falls short."""
    post = Posterior.load(fitted / "post.nc")
    rows = pd.DataFrame({"arch": "syn-a", "task": "syn-x", "depth": [4, 2], "n_train": 4000,
                         "width": [64, 64], "density": 0.02})
    rows["params_total"] = synthetic_params(rows["depth"], rows["width"])
    whole = post.summary(rows, band="prediction")
    assert list(whole["beyond"]) == ["", ""]
    trained = post.beyond.trained["syn-a/syn-x"]
    post.beyond.trained["syn-a/syn-x"] = trained[~((trained[:, 0] == 4) & (trained[:, 1] == 64))]
    cut = post.summary(rows, band="prediction")
    assert cut["beyond"].iloc[0] in ("depth", "width")  # the nearer of (2, 64) and (4, 16)
    assert cut["beyond"].iloc[1] == ""
    width = np.log(cut["upper"] / cut["lower"]) / np.log(whole["upper"] / whole["lower"])
    assert width.iloc[0] > 1.2
    assert width.iloc[1] == pytest.approx(1.0)


def test_hdi_of_a_known_distribution():
    x = np.random.default_rng(0).standard_normal((1, 200_000))
    lo, hi = hdi(x, 0.9)
    assert lo[0] == pytest.approx(-1.645, abs=0.02) and hi[0] == pytest.approx(1.645, abs=0.02)
    with pytest.raises(UserError):
        hdi(x, 1.5)


def test_fit_is_reproducible_with_a_seed(fitted, tmp_path):
    write_grid(_grid(), tmp_path / "g.csv")
    assert main(["fit", str(tmp_path / "g.csv"), "-o", str(tmp_path / "p.nc"), "--draws", "150",
                 "--tune", "300", "--chains", "2", "--seed", "1", "--quiet"]) == 0
    a, b = Posterior.load(fitted / "post.nc"), Posterior.load(tmp_path / "p.nc")
    np.testing.assert_array_equal(a.draws["theta"], b.draws["theta"])


def test_law_variants_fit_with_loo_and_answer_queries(tmp_path):
    write_grid(_grid(), tmp_path / "g.csv")
    assert main(["fit", str(tmp_path / "g.csv"), "-o", str(tmp_path / "p.nc"), "--draws", "100",
                 "--tune", "200", "--chains", "2", "--seed", "1", "--p-depends-on-n",
                 "--gamma-depends-on-n", "--curved", "--loo", "--no-discrepancy",
                 "--target-accept", "0.95", "--quiet"]) == 0
    import arviz as az

    post = Posterior.load(tmp_path / "p.nc")
    assert {"kappa_n", "kappa_gamma_n", "phi2", "psi2"} <= set(post.coefs)
    assert post.meta["settings"]["curved"] and post.meta["settings"]["gamma_depends_on_n"]
    assert post.meta["discrepancy"] is None  # --no-discrepancy: the curvature's band alone
    loo = az.loo(az.from_netcdf(tmp_path / "p.nc"))  # the stored pointwise log likelihood
    assert np.isfinite(loo.elpd_loo)
    rows = pd.DataFrame({"arch": "syn-a", "task": "syn-x", "depth": 2, "width": [16, 16, 512],
                         "n_train": [1000, 4000, 4000], "density": 0.05,
                         "params_total": synthetic_params(2, np.array([16, 16, 512]))})
    t = post.summary(rows)
    assert ((t["lower"] > 0) & (t["upper"] < 1) & (t["lower"] < t["upper"])).all()
    # the curvature is barely informed far from the grid (widths 16-64): a wider band at 512
    width = np.log(t["upper"] / t["lower"]).to_numpy()
    assert width[2] > 1.5 * width[1]
    k = [post.coefs.index(c) for c in ("phi2", "psi2")]  # the curvature's spread did that:
    post.draws["theta"][:, :, k] = post.draws["theta"][:, :, k].mean(axis=0)
    fixed = post.summary(rows)
    assert np.log(fixed["upper"] / fixed["lower"]).to_numpy()[2] < 0.9 * width[2]
    assert set(post.natural("syn-a", "syn-x")) >= {"phi2", "psi2", "gamma", "p_prime"}


def test_ar1_likelihood_is_the_exact_multivariate_normal_of_a_run():
    from scipy.stats import multivariate_normal

    from bayes_prune.run_points import ar1_loglik, previous_point

    # runs interleaved and out of order: each point's predecessor is its run's previous round
    pts = pd.DataFrame({"run_idx": [1, 0, 0, 1, 0, 1], "round": [1, 2, 0, 0, 1, 3]})
    np.testing.assert_array_equal(previous_point(pts), [3, 4, -1, -1, 2, 0])
    rng = np.random.default_rng(0)
    n, rho = 7, 0.6
    sd, mean, obs = rng.uniform(0.5, 2, n), rng.normal(size=n), rng.normal(size=n)
    lags = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    exact = multivariate_normal(mean, np.outer(sd, sd) * rho ** lags).logpdf(obs)
    got = ar1_loglik(obs, mean, sd, np.full(n, rho), np.r_[-1, np.arange(n - 1)], xp=np)
    assert got == pytest.approx(exact, rel=1e-12)
    # rho = 0: independent normals
    indep = ar1_loglik(obs, mean, sd, np.zeros(n), np.r_[-1, np.arange(n - 1)], xp=np)
    assert indep == pytest.approx(sum(multivariate_normal(m, s ** 2).logpdf(o)
                                      for m, s, o in zip(mean, sd, obs, strict=True)))


def test_ar1_fit_stores_rho_and_refuses_loo_and_student(tmp_path):
    from bayes_prune.fit import fit

    grid = _grid()
    with pytest.raises(UserError, match="--loo needs independent points"):
        fit(grid, ar1=True, log_likelihood=True, progress=False)
    with pytest.raises(UserError, match="normal likelihood"):
        fit(grid, ar1=True, likelihood="student", progress=False)
    post = fit(grid, ar1=True, draws=300, tune=300, chains=2, seed=1, progress=False,
               ess_target=None)
    assert post.meta["settings"]["ar1"] is True
    rho = post.idata.posterior["rho"].to_numpy()
    assert rho.shape[-1] == len(post.groups) and ((rho > 0) & (rho < 1)).all()
    assert np.isfinite(post.summary(grid.head(20))["median"]).all()


def test_a_default_fit_that_diverges_samples_again_at_a_higher_acceptance(monkeypatch, capsys):
    import bayes_prune.fit as fit_module

    grid = _grid()
    assert fit_module.defaults_for(len(grid))["target_accept"] == 0.85  # a large grid's default
    real, accepts, cache = fit_module.sample, [], {}

    def diverging_once(compiled, *, target_accept, **kw):  # one real sampling, then copies
        accepts.append(target_accept)
        if not cache:
            cache["run"] = real(compiled, target_accept=target_accept, **kw)
        idata, run = cache["run"]
        idata = idata.copy()
        # the ladder is under test, not the sampler: the real draws' own divergences (40
        # draws after 150 tuning steps may have one) are cleared, one is put on the first
        idata.sample_stats["diverging"][:] = False
        if len(accepts) == 1:  # the first attempt: one divergence
            idata.sample_stats["diverging"][0, 0] = True
        return idata, run

    monkeypatch.setattr(fit_module, "sample", diverging_once)
    kw = {"draws": 40, "tune": 150, "chains": 2, "ess_target": None, "progress": False,
          "discrepancy": False}
    post = fit_module.fit(grid, **kw)
    assert accepts == [0.85, 0.95]
    assert post.meta["settings"]["target_accept"] == 0.95
    assert post.meta["settings"]["escalated_from"] == 0.85
    assert post.diagnostics["divergences"] == 0
    assert "1 divergence(s) at target acceptance 0.85" in capsys.readouterr().err
    # an acceptance the user chose is theirs: no second attempt
    accepts.clear()
    monkeypatch.setattr(fit_module, "compile_model", lambda *a, **k: None)
    post = fit_module.fit(grid, target_accept=0.85, **kw)
    assert accepts == [0.85] and post.meta["settings"]["escalated_from"] is None
    assert post.diagnostics["divergences"] == 1
    # still diverging at 0.95: the last step, 0.99 with the small grids' 2,000 tuning steps
    # (here a copy of the first draws), which the posterior records
    accepts.clear()
    tunes = []

    def diverging_twice(compiled, *, target_accept, tune, **kw):
        accepts.append(target_accept)
        tunes.append(tune)
        idata = cache["run"][0].copy()
        idata.sample_stats["diverging"][:] = False
        idata.sample_stats["diverging"][0, 0] = len(accepts) < 3
        return idata, cache["run"][1]

    monkeypatch.setattr(fit_module, "sample", diverging_twice)
    post = fit_module.fit(grid, **kw)
    assert accepts == [0.85, 0.95, 0.99] and tunes == [150, 150, 2000]
    settings = post.meta["settings"]
    assert (settings["target_accept"], settings["tune"], settings["escalated_from"]) == \
        (0.99, 2000, 0.85)
    assert post.diagnostics["divergences"] == 0
    err = capsys.readouterr().err
    assert "at target acceptance 0.95: sampling again at 0.99 with 2000 tuning steps" in err


def test_runs_are_conditioned_on_their_dense_point_where_they_have_one():
    from bayes_prune.coords import layout
    from bayes_prune.model import build_model
    from bayes_prune.run_points import measured_runs

    grid = _grid()
    lay = layout(grid)
    assert measured_runs(lay, "auto").all()
    assert "log_eps_np_run" not in build_model(lay, runs_mode="auto").named_vars
    latent = build_model(lay)["log_eps_np_run"]  # the default
    assert latent.shape.eval()[0] == len(lay.runs)  # every run's dense error sampled
    # runs without a dense point (round 0): their dense errors, and only theirs, are sampled
    drop = (grid["seed"] == 1) & (grid["depth"] == 2)
    lacking = len(grid[drop].drop_duplicates(["arch", "task", "depth", "width", "n_train"]))
    lay = layout(grid[~(drop & (grid["round"] == 0))])
    assert (~measured_runs(lay, "auto")).sum() == lacking
    assert build_model(lay, runs_mode="auto")["log_eps_np_run"].shape.eval()[0] == lacking
    with pytest.raises(UserError, match="runs_mode 'measured'"):
        measured_runs(lay, "measured")
    with pytest.raises(UserError, match="unknown runs mode"):
        measured_runs(lay, "sampled")


def test_invariant_scatter_finds_the_configuration_whose_curve_is_shifted(monkeypatch, tmp_path):
    """``fit --invariant-scatter``: one configuration whose whole curve sits 0.6 log units
    further along density than the law's (its pruned densities recorded e^0.6 too small) gets
    that offset of its log invariant, the others about none, and keeps it in its file; a
    trained configuration's prediction carries its offset, a new configuration's band the
    group's scatter, on both the numpy and the fused path."""
    from bayes_prune import kernels

    grid = _grid()
    group = (grid["arch"] == grid["arch"].iloc[0]) & (grid["task"] == grid["task"].iloc[0])
    one = group & (grid["depth"] == 4) & (grid["width"] == 64) & (grid["n_train"] == 4000)
    grid.loc[one & (grid["round"] > 0), "density"] *= np.exp(-0.6)
    write_grid(grid, tmp_path / "g.csv")
    assert main(["fit", str(tmp_path / "g.csv"), "-o", str(tmp_path / "p.nc"), "--draws", "300",
                 "--tune", "300", "--chains", "2", "--seed", "1", "--ess-target", "0",
                 "--invariant-scatter", "--quiet"]) == 0
    post = Posterior.load(tmp_path / "p.nc")  # the offsets survive the file
    assert post.meta["settings"]["invariant_scatter"] is True
    cfg = post.configs.reset_index(drop=True)
    off = np.median(post.draws["log_m_config"], axis=0)
    hit = np.flatnonzero((cfg["arch"] == grid["arch"].iloc[0]) & (cfg["task"] == grid["task"]
                         .iloc[0]) & (cfg["depth"] == 4) & (cfg["width"] == 64)
                         & (cfg["n_train"] == 4000))
    assert len(hit) == 1 and off[hit[0]] > 0.3
    assert np.abs(np.delete(off, hit)).max() < 0.25
    # its in-sample curve follows its shifted points, closer than with no offset
    rows = grid[one & (grid["round"] > 0)]

    def miss(p):
        med = np.median(p.predict_draws(rows), axis=1)
        return np.median(np.abs(np.log(med / rows["test_error"].to_numpy())))

    unshifted = Posterior({**post.draws, "log_m_config": 0 * post.draws["log_m_config"]},
                          post.meta)
    assert miss(post) < 0.7 * miss(unshifted)
    new = rows.assign(width=48)  # never trained: the group's scatter widens the band
    trained_width = np.ptp(np.log(np.quantile(post.predict_draws(rows), [0.05, 0.95], axis=1)),
                           axis=0)
    new_width = np.ptp(np.log(np.quantile(post.predict_draws(new), [0.05, 0.95], axis=1)),
                       axis=0)
    assert np.median(new_width) > np.median(trained_width)
    pytest.importorskip("jax")
    both = pd.concat([rows, new], ignore_index=True)
    monkeypatch.setenv("BAYES_PRUNE_FUSED", "0")
    plain = post.predict_draws(both, band="prediction")
    monkeypatch.setenv("BAYES_PRUNE_FUSED", "1")
    monkeypatch.setattr(kernels, "MIN_ELEMENTS", 1)
    np.testing.assert_allclose(np.log(post.predict_draws(both, band="prediction")),
                               np.log(plain), atol=2e-5, rtol=0)


def test_dense_depth_learns_that_deeper_networks_err_less_at_equal_weights():
    """A grid whose dense errors follow weights x depth^2 (drawn with that size, then stated
    with the weights alone): the default fit's zeta finds the exponent, its configurations sit
    closer to its dense law, and a deeper, wider configuration it never saw gets a dense error
    nearer the measured one than the paper's envelope (``--no-dense-depth``) gives it."""
    from bayes_prune.fit import fit

    truth = default_truths()
    key = next(iter(truth))
    grid = simulate_grid(truths={key: truth[key]}, depths=(1, 2, 4), widths=(16, 32, 64),
                         n_trains=(1000,), seeds=(0, 1), rounds=6, rng=3)
    factor = grid["depth"].to_numpy(float) ** 2  # the weights the errors were drawn with
    for col in ("params_total", "params_nonzero", "params_prunable"):
        if col in grid:
            grid[col] = np.maximum(np.round(grid[col] / factor), 1).astype(int)
    held = (grid["depth"] == 4) & (grid["width"] == 64)
    fitted = {d: fit(grid[~held].reset_index(drop=True), dense_depth=d, draws=400, tune=400,
                     chains=2, seed=1, progress=False) for d in (True, False)}
    zeta = fitted[True].natural(*key)["zeta"]
    assert "zeta" not in fitted[False].natural(*key)
    assert np.quantile(zeta, 0.05) > 1.0 and 1.4 < np.median(zeta) < 2.6, np.median(zeta)
    tau = {d: np.median(post.draws["tau"]) for d, post in fitted.items()}
    assert tau[True] < 0.7 * tau[False], tau
    dense = grid[held & (grid["round"] == 0)]
    measured = np.log(dense["test_error"]).mean()
    miss = {d: abs(np.median(np.log(post.predict_draws(dense.head(1)))) - measured)
            for d, post in fitted.items()}
    assert miss[True] < 0.5 * miss[False], miss


def test_failed_diagnostics_name_the_worst_mixed_scalar_and_whether_chains_sit_apart():
    """R-hat above 1.01 names its scalar, with each chain's median: one chain in a second mode
    is told from chains that overlap but mix slowly (more draws help only the second)."""
    import arviz as az

    from bayes_prune.diagnostics import diagnose, worst_text

    rng = np.random.default_rng(0)
    texts = []
    for shift in (3.0, 0.3):
        theta = rng.normal(size=(4, 300, 2, 3))
        theta[3, :, 1, 0] += shift  # one chain of one group's log_gamma elsewhere
        idata = az.from_dict(posterior={"theta": theta, "sigma": rng.normal(size=(4, 300, 2))},
                             coords={"group": ["a/x", "b/y"], "coef": ["log_gamma", "phi", "psi"]},
                             dims={"theta": ["group", "coef"], "sigma": ["group"]},
                             sample_stats={"diverging": np.zeros((4, 300), bool)})
        d = diagnose(idata)
        assert not d["ok"] and d["worst"]["variable"] == "theta[b/y, log_gamma]"
        assert d["worst"]["chain_medians"][3] == pytest.approx(shift, abs=0.25)
        json.dumps(d)  # stored in the posterior file's metadata
        texts.append(worst_text(d))
    assert "more than one mode" in texts[0] and "more draws" in texts[1]
    assert "more than one mode" not in texts[1]
