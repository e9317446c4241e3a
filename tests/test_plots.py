"""Plots draw only: they return the Axes they drew on, with log axes where the law lives."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bayes_prune import plots  # noqa: E402


def test_curves_and_collapse_draw_on_log_axes():
    d = np.logspace(-3, 0, 20)
    pts = pd.DataFrame({"density": np.tile(d, 2), "test_error": np.tile(0.1 + 0.8 * (d < 0.01),
                                                                         2),
                        "seed": np.repeat([0, 1], 20)})
    band = pd.DataFrame({"density": d, "median": 0.2, "lower_50": 0.18, "upper_50": 0.22,
                         "lower_90": 0.15, "upper_90": 0.25})
    ax = plots.curves(pts, band, random_error=0.9)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    labels = ax.get_legend_handles_labels()[1]
    assert {"90 % band", "50 % band", "posterior median", "seed 0", "seed 1"} <= set(labels)
    ax = plots.collapse(np.log(d), np.full(20, 0.3), np.repeat([16, 32], 10),
                        curve=(d, np.full(20, 0.3)))
    assert ax.get_xscale() == "log" and "width 16" in ax.get_legend_handles_labels()[1]


def test_forest_and_calibration_reuse_a_given_axes():
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2)
    assert plots.forest({"mlp/mnist1d": (1, 2, 3), "cnn/mnist1d": (2, 3, 4)}, "gamma", ax=a) is a
    assert {t.get_text() for t in a.get_yticklabels()} == {"mlp/mnist1d", "cnn/mnist1d"}
    assert plots.calibration(np.array([0.5, 0.9]), {"bayes": np.array([0.5, 0.88])}, ax=b) is b
    plt.close(fig)


def test_by_density_draws_a_bar_per_interval_dense_first_with_its_miss():
    """The calibration figure's second panel: one bar per interval of density, the dense point
    on the left, each bar's height its band's coverage and its mean log miss written above."""
    import matplotlib.pyplot as plt

    from bayes_prune import evaluate, figures, reference
    from bayes_prune.posterior import Posterior

    rows = [{"density": "< 0.01", "points": 5, "log_miss": -0.49, "coverage_90": 0.08,
             "width_90": 0.6},
            {"density": "dense", "points": 2, "log_miss": 0.1, "coverage_90": 1.0,
             "width_90": 0.5}]
    fig, ax = plt.subplots()
    assert plots.by_density(rows, ax=ax) is ax
    assert [t.get_text() for t in ax.get_xticklabels()] == ["dense", "< 0.01"]
    assert [round(p.get_height(), 2) for p in ax.patches] == [1.0, 0.08]
    assert {t.get_text() for t in ax.texts} == {"+0.10", "-0.49"}
    plt.close(fig)

    held = reference.read_grid().groupby(["arch", "task"]).head(60).reset_index(drop=True)
    fig, cover = figures.calibration(Posterior.load("reference"), held)
    left, right = fig.axes
    want = evaluate.by_density(held, np.log(Posterior.load("reference").predict_draws(
        held, band="prediction")))
    assert len(right.patches) == len(want) and 0 < cover[0.9] <= 1
    # the shade where a band calibrated for these rows would lie holds the nominal levels
    shade = [c for c in left.collections if c.get_label() == "a calibrated band, 5-95 %"]
    assert len(shade) == 1
    lo, hi = shade[0].get_paths()[0].vertices[:, 1].min(), \
        shade[0].get_paths()[0].vertices[:, 1].max()
    assert 0 <= lo < 0.1 and 0.9 < hi <= 1
    plt.close(fig)
