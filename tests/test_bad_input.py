"""Every bad input is answered in one line, with exit status 2, and changes nothing that was there.

One test per case that once gave a traceback, was accepted silently, or was refused with the
wrong message or a side effect."""

import pytest

from bayes_prune.cli import main
from bayes_prune.grid import write_grid
from bayes_prune.store import Store
from bayes_prune.synthetic import simulate_grid

SPEC = """
task = "digits"
arch = "mlp"
depths = [1]
widths = [8]
n_trains = [300]
seeds = [0]
rounds = 2

[recipe]
steps = 30
rewind_step = 5
"""


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(capsys, root, argv, message):
    """Run the CLI on ``argv``: exit 2, one line naming ``message``, nothing under ``root``
    changed."""
    before = _files(root)
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayes-prune: error: ") and len(err.splitlines()) == 1, err
    assert message in err, err
    assert _files(root) == before
    return err


@pytest.fixture
def grid(tmp_path):
    """A good grid as CSV text lines, and an existing output that no refusal may touch."""
    path = tmp_path / "good.csv"
    df = simulate_grid(depths=(2, 3), widths=(16, 64), n_trains=(1000,), seeds=(0,), rounds=4)
    write_grid(df.assign(params_prunable=df["params_total"]), path)
    (tmp_path / "post.nc").write_bytes(b"an earlier posterior")
    return path.read_text().splitlines()


def _edit(tmp_path, lines, column, value, row=1):
    cols = lines[0].split(",")
    cells = lines[row].split(",")
    cells[cols.index(column)] = value
    out = tmp_path / "bad.csv"
    out.write_text("\n".join(lines[:row] + [",".join(cells)] + lines[row + 1:]) + "\n")
    return out


def _commands(path, tmp_path):
    return {"lsq": ["lsq", path],
            "fit": ["fit", path, "-o", tmp_path / "post.nc", "--draws", 5, "--tune", 5,
                    "--chains", 1, "--quiet"],
            "evaluate": ["evaluate", path, "--split", "params<=3000", "--methods", "lsq"]}


@pytest.mark.parametrize("command", ["lsq", "fit", "evaluate"])
def test_inf_in_an_integer_column(capsys, tmp_path, grid, command):
    bad = _edit(tmp_path, grid, "depth", "inf")
    _refused(capsys, tmp_path, _commands(bad, tmp_path)[command],
             "bad.csv: row 2, column 'depth': inf is not a finite number")


@pytest.mark.parametrize("command", ["lsq", "fit"])
def test_random_error_zero(capsys, tmp_path, grid, command):
    bad = _edit(tmp_path, grid, "random_error", "0")
    _refused(capsys, tmp_path, _commands(bad, tmp_path)[command],
             "row 2, column 'random_error': 0.0 is not a random-guess error in (0, 1]")


def test_a_row_cut_short(capsys, tmp_path, grid):
    cols = grid[0].split(",")
    cut = ",".join(grid[3].split(",")[:cols.index("params_prunable")])
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(grid[:3] + [cut] + grid[4:]) + "\n")
    _refused(capsys, tmp_path, _commands(bad, tmp_path)["fit"],
             "row 4, column 'params_prunable': missing value (NaN)")


def test_a_huge_integer(capsys, tmp_path, grid):
    bad = _edit(tmp_path, grid, "depth", "1e20")
    _refused(capsys, tmp_path, ["lsq", bad],
             "row 2, column 'depth': 1e+20 is not an integer of at most 2^53")


def test_the_duplicate_key_message_shows_plain_values(capsys, tmp_path, grid):
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(grid + [grid[2]]) + "\n")
    err = _refused(capsys, tmp_path, ["lsq", bad], "duplicate (run, round) key (task=")
    assert "np." not in err and "round=1" in err


def test_a_directory_given_as_the_grid(capsys, tmp_path, grid):
    (tmp_path / "d.csv").mkdir()
    _refused(capsys, tmp_path, ["lsq", tmp_path / "d.csv"], "d.csv: is a directory, not a grid")


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_grid_written_with_another_separator_is_named(capsys, tmp_path, grid, sep):
    (tmp_path / "other.csv").write_text("\n".join(line.replace(",", sep) for line in grid))
    _refused(capsys, tmp_path, ["lsq", tmp_path / "other.csv"],
             f"its columns are separated by {sep!r}; a grid CSV is separated by commas")


@pytest.mark.parametrize("command", ["lsq", "evaluate"])
def test_one_configuration_for_least_squares(capsys, tmp_path, command):
    one = tmp_path / "one.csv"
    write_grid(simulate_grid(depths=(2,), widths=(16,), n_trains=(1000,), seeds=(0, 1),
                             rounds=4), one)
    argv = ["lsq", one] if command == "lsq" else ["evaluate", one, "--holdout", one,
                                                  "--methods", "lsq"]
    err = _refused(capsys, tmp_path, argv, "1 configuration(s) of 1 (depth, width) shape(s)")
    assert "`bayes-prune fit` supports such a group" in err


def test_a_run_without_its_dense_point_for_least_squares(capsys, tmp_path, grid):
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([grid[0]] + grid[2:]) + "\n")  # the first run's round 0 is gone
    _refused(capsys, tmp_path, ["lsq", bad], "bad.csv: the run (task=")


def _spec(tmp_path, text):
    spec = tmp_path / "g.toml"
    spec.write_text(text)
    Store(tmp_path / "s.sqlite").close()  # an existing store that must stay as it is
    return spec


@pytest.mark.parametrize("action", ["run", "status"])
@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("steps = 30", 'steps = 30\nlr = "fast"'),
     "recipe.lr = 'fast' must be a finite number"),
    (lambda s: s.replace("steps = 30", "steps = 20.5"), "recipe.steps = 20.5 must be an integer"),
    (lambda s: s.replace("rounds = 2", "rounds = true"),
     "field 'rounds' must be an integer >= 1, got True"),
    (lambda s: s.replace("seeds = [0]", "seeds = [-1]"),
     "field 'seeds' must hold integers >= 0, got -1"),
    (lambda s: s.replace("steps = 30", "steps = 30\nlr = inf"),
     "recipe.lr = inf must be a finite number"),
])
def test_bad_spec_values(capsys, tmp_path, action, edit, message):
    spec = _spec(tmp_path, edit(SPEC))
    _refused(capsys, tmp_path, ["grid", action, spec, "--store", tmp_path / "s.sqlite"],
             f"g.toml: {message}")


def test_a_directory_given_as_the_spec(capsys, tmp_path):
    _spec(tmp_path, SPEC)
    (tmp_path / "d.toml").mkdir()
    _refused(capsys, tmp_path, ["grid", "run", tmp_path / "d.toml", "--store",
                                tmp_path / "s.sqlite"], "d.toml: is a directory, not a spec")


def test_export_of_an_empty_file(capsys, tmp_path):
    (tmp_path / "empty.sqlite").write_bytes(b"")
    _refused(capsys, tmp_path, ["grid", "export", "--store", tmp_path / "empty.sqlite", "-o",
                                tmp_path / "g.csv"], "empty.sqlite: an empty file, not an SQLite")


@pytest.mark.parametrize("option, value, message", [
    ("--density", "nan", "--density: nan is not a density in (0, 1]"),
    ("--density", "1.5", "--density: 1.5 is not a density in (0, 1]"),
    ("--params-total", "inf", "--params-total: inf is not a positive number"),
])
def test_bad_query_values(capsys, tmp_path, option, value, message):
    (tmp_path / "post.nc").write_bytes(b"an earlier posterior")
    argv = {"--arch": "mlp", "--task": "digits", "--depth": "2", "--width": "16",
            "--n-train": "1000", "--density": "0.5", option: value}
    _refused(capsys, tmp_path, ["query", tmp_path / "post.nc",
                                *[x for kv in argv.items() for x in kv]], message)


def test_a_bad_query_table(capsys, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("arch,task,depth,width,n_train,density\nmlp,digits,2,16,1000,0.5\n"
                    "mlp,digits,2.5,16,1000,0.5\n")
    _refused(capsys, tmp_path, ["query", tmp_path / "post.nc", "--from-csv", rows],
             "rows.csv: row 3, column 'depth': 2.5 is not a positive integer")


def test_a_query_table_with_another_separator(capsys, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("arch;task;depth;width;n_train;density\nmlp;digits;2;16;1000;0.5\n")
    _refused(capsys, tmp_path, ["query", tmp_path / "post.nc", "--from-csv", rows],
             "rows.csv: its columns are separated by ';'; a CSV here is separated by commas")


def test_compare_with_a_pair_never_fitted(capsys, tmp_path, monkeypatch):
    from bayes_prune import posterior

    class Fitted:  # what compare needs to know of a posterior fitted on mlp/digits
        archs, tasks = ["mlp"], ["digits"]
        approximate = None

        def compare(self, *args):
            raise AssertionError("compare reached with a pair it cannot answer")

    monkeypatch.setattr(posterior.Posterior, "load", classmethod(lambda cls, p: Fitted()))
    _refused(capsys, tmp_path, ["compare", tmp_path / "post.nc", "--coef", "gamma", "--a",
                                "mlp/digits", "--b", "foo/bar"],
             "--b foo/bar: the posterior was fitted on archs mlp and tasks digits")


def test_a_frame_handed_to_fit_in_python_is_checked_like_a_file():
    """``fit(frame)`` from a notebook: a density above 1 is refused by name before sampling,
    not fitted."""
    from bayes_prune.errors import UserError
    from bayes_prune.fit import fit

    grid = simulate_grid(depths=(2,), widths=(16,), n_trains=(1000,), seeds=(0,), rounds=4,
                         rng=0)
    grid.loc[2, "density"] = 1.8
    with pytest.raises(UserError, match=r"frame: row 4, column 'density': 1.8 is not a density"):
        fit(grid, source="frame", progress=False)


@pytest.mark.parametrize("command", ["compare", "suggest"])
def test_a_group_not_written_arch_slash_task(capsys, tmp_path, command):
    """``--a mlp`` is refused by argparse in its own words (exit 2, usage above it), naming the
    form, not its parser's function (``invalid _group_arg value``)."""
    before = _files(tmp_path)
    argv = {"compare": ["compare", "reference", "--coef", "gamma"],
            "suggest": ["suggest", "reference", "--goal-compare", "--coef", "gamma"]}[command]
    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--a", "mlp", "--b", "cnn/mnist1d"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.endswith("argument --a: 'mlp' is not of the form ARCH/TASK (e.g. mlp/mnist1d)"), err
    assert _files(tmp_path) == before
