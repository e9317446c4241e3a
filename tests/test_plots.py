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
