"""The error-grid contract: validation messages, readers and writers."""

import numpy as np
import pandas as pd
import pytest

from bayes_prune.errors import UserError
from bayes_prune.grid import COLUMNS, log_excess, random_errors, read_grid, validate, write_grid
from bayes_prune.synthetic import simulate_grid


@pytest.fixture(scope="module")
def grid():
    return simulate_grid(depths=(2,), widths=(16, 32), n_trains=(1000,), seeds=(0, 1),
                         rounds=5)


def test_round_trip_csv_and_parquet(grid, tmp_path):
    for name in ("g.csv", "g.parquet"):
        write_grid(grid, tmp_path / name)
        back = read_grid(tmp_path / name)
        pd.testing.assert_frame_equal(back, validate(grid), check_dtype=False)
        assert list(back.columns[: len(COLUMNS)]) == list(COLUMNS)


@pytest.mark.parametrize("column, value, message", [
    ("test_error", 1.3, "row 5, column 'test_error': 1.3 is not an error in [0, 1]"),
    ("density", 0.0, "row 5, column 'density': 0.0 is not a density in (0, 1]"),
    ("density", 1.5, "column 'density': 1.5 is not a density in (0, 1]"),
    ("width", 0, "column 'width': 0 is not a positive integer"),
    ("depth", -1, "column 'depth': -1 is not a positive integer"),
    ("n_train", 0, "column 'n_train': 0 is not a positive integer"),
    ("test_error", np.nan, "row 5, column 'test_error': missing value (NaN)"),
    ("width", "wide", "column 'width': 'wide' is not a number"),
    ("depth", 2.5, "column 'depth': 2.5 is not an integer"),
])
def test_bad_values_name_row_column_and_expectation(grid, column, value, message):
    bad = grid.copy()
    bad[column] = bad[column].astype(object)
    bad.loc[3, column] = value
    with pytest.raises(UserError, match=r"^my\.csv: .*" + _re(message)):
        validate(bad, source="my.csv")


def _re(text):
    import re

    return re.escape(text)


def test_missing_column(grid):
    with pytest.raises(UserError, match="missing column.*n_test"):
        validate(grid.drop(columns="n_test"))


def test_duplicate_run_round(grid):
    bad = pd.concat([grid, grid.iloc[[2]]], ignore_index=True)
    with pytest.raises(UserError, match=r"duplicate \(run, round\) key"):
        validate(bad)


def test_nonzero_above_total(grid):
    bad = grid.copy()
    bad.loc[0, "params_nonzero"] = bad.loc[0, "params_total"] + 1
    with pytest.raises(UserError, match="exceeds params_total"):
        validate(bad)


def test_bad_file_is_never_written_over(grid, tmp_path):
    path = tmp_path / "g.csv"
    write_grid(grid, path)
    before = path.read_bytes()
    bad = grid.copy()
    bad.loc[0, "test_error"] = -0.1
    with pytest.raises(UserError):
        write_grid(bad, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.csv"]


def test_unreadable_and_unknown_files(tmp_path):
    with pytest.raises(UserError, match="no such grid file"):
        read_grid(tmp_path / "nope.csv")
    (tmp_path / "g.txt").write_text("x")
    with pytest.raises(UserError, match="unknown grid format '.txt'"):
        read_grid(tmp_path / "g.txt")
    (tmp_path / "g.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="not a readable grid file"):
        read_grid(tmp_path / "g.parquet")


def test_random_errors_from_column_or_registry(grid):
    assert np.allclose(random_errors(grid), 0.9)
    real = grid.drop(columns="random_error").assign(task="mnist1d")
    assert np.allclose(random_errors(real), 0.9)
    with pytest.raises(UserError, match="unknown task 'syn-x'; known tasks: mnist1d"):
        random_errors(grid.drop(columns="random_error"))


def test_log_excess_is_over_the_nearest_trained_configuration():
    """Zero for a configuration some trained one dominates; else the excess over the trained
    configuration that leaves the least weighted squared excess."""
    trained = np.array([[1, 32, 4000], [3, 16, 4000]], float)
    sizes = np.array([[2, 16, 1000], [3, 32, 4000], [4, 32, 4000]], float)
    ex = log_excess(sizes, trained)
    assert np.allclose(ex[0], 0)
    assert np.allclose(ex[1], [0, np.log(2), 0])  # (3, 16): 2x narrower; (1, 32): 3x shallower
    assert np.allclose(ex[2], [np.log(4 / 3), np.log(2), 0])
    # depth drifting 100x faster: the shallow wide network stays the farther one
    assert np.allclose(log_excess(sizes[1:2], trained, np.array([100.0, 1.0, 1.0])),
                       [[0, np.log(2), 0]])
    # width drifting 100x faster: the shallow wide one is nearer
    assert np.allclose(log_excess(sizes[1:2], trained, np.array([1.0, 100.0, 1.0])),
                       [[np.log(3), 0, 0]])
