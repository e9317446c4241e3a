"""`bayes-prune import table`: the converted grids of ../shared/external reproduced from their
upstream tables by one command each, and every kind of bad table refused with its row and column,
nothing written."""

import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_prune.cli import main
from bayes_prune.grid import read_grid

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = REPO.parent / "shared" / "external"
needs_shared = pytest.mark.skipif(not EXTERNAL.is_dir(), reason="../shared/external is not here")
COMPARED = ["task", "arch", "depth", "width", "n_train", "seed", "round", "density", "test_error",
            "n_test", "params_total", "params_nonzero", "params_prunable", "random_error"]


def _command(name: str) -> list[str]:
    """The `bayes-prune import table` command experiments/README.md gives for grid ``name``,
    with $EXTERNAL and $REPO filled in."""
    text = (REPO / "experiments" / "README.md").read_text()
    start = text.index(f"# {name}\n")
    block = text[start:text.index("```", start)]
    line = " ".join(x.rstrip("\\").strip() for x in block.splitlines()[1:] if x.strip())
    line = line.replace("$EXTERNAL", str(EXTERNAL)).replace("experiments/", f"{REPO}/experiments/")
    args = shlex.split(line)
    assert args[:3] == ["bayes-prune", "import", "table"]
    return args[1:]


def _same(ours: pd.DataFrame, theirs: pd.DataFrame, key: list[str]) -> None:
    ours = ours.sort_values(key).reset_index(drop=True)
    theirs = theirs.sort_values(key).reset_index(drop=True)
    assert len(ours) == len(theirs)
    for col in COMPARED:
        if pd.api.types.is_numeric_dtype(theirs[col]):
            np.testing.assert_allclose(ours[col].to_numpy(float), theirs[col].to_numpy(float),
                                       rtol=0, atol=1e-12, err_msg=col)
        else:
            assert ours[col].tolist() == theirs[col].tolist(), col


@needs_shared
@pytest.mark.parametrize("name, converted, key", [
    ("renda2020", "rewinding-renda2020/renda2020.grid.csv", ["task", "arch", "depth", "seed",
                                                             "round"]),
    ("csgiung", "lth-imagenet-csgiung/csgiung_imagenet_imp.grid.csv", ["task", "round"]),
])
def test_import_table_reproduces_the_converted_grids(tmp_path, capsys, name, converted, key):
    out = tmp_path / f"{name}.csv"
    assert main(_command(name) + ["-o", str(out)]) == 0
    theirs = pd.read_csv(EXTERNAL / converted)
    _same(read_grid(out), theirs, key)
    assert f"wrote {len(theirs)} rows" in capsys.readouterr().out


def _table(tmp_path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = ["--set", "task=digits", "--set", "arch=mlp", "--set", "depth=1", "--set", "width=8",
        "--set", "n_train=1000", "--set", "n_test=497", "--set", "params_total=610"]


def _run(tmp_path, table, *options):
    out = tmp_path / "grid.csv"
    code = main(["import", "table", str(table), "-o", str(out), *BASE, *options])
    return code, out


def test_percentages_sparsity_and_rounds(tmp_path):
    table = _table(tmp_path, "run,% pruned,acc\n"
                             "a,0,91.5\na,20,91.0\na,36,90.1\na,48.8,88.0\n"
                             "b,0,92.0\nb,20,91.2\n")
    code, out = _run(tmp_path, table, "--map", "seed=run", "--map", "sparsity=% pruned",
                     "--map", "accuracy=acc")
    assert code == 2  # 'a'/'b' are no seeds: refused below; now with numbered labels
    table = _table(tmp_path, table.read_text().replace("a,", "seed_1,").replace("b,", "seed_2,"))
    code, out = _run(tmp_path, table, "--map", "seed=run", "--map", "sparsity=% pruned",
                     "--map", "accuracy=acc")
    assert code == 0
    grid = read_grid(out)
    assert grid["round"].tolist() == [0, 1, 2, 3, 0, 1]
    assert grid["density"].to_numpy() == pytest.approx([1, 0.8, 0.64, 0.512, 1, 0.8])
    assert grid["test_error"].to_numpy() == pytest.approx([0.085, 0.09, 0.099, 0.12, 0.08,
                                                           0.088])
    assert grid["params_nonzero"].tolist() == [610, 488, 390, 312, 610, 488]


def _refused(tmp_path, capsys, table, *options) -> str:
    code, out = _run(tmp_path, table, *options)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not out.exists()
    return err[0]


def test_an_accuracy_of_140_is_refused(tmp_path, capsys):
    table = _table(tmp_path, "round,acc\n0,91.5\n1,140\n2,90.1\n")
    err = _refused(tmp_path, capsys, table, "--set", "seed=0", "--map", "accuracy=acc",
                   "--map", "round=round", "--set", "density=1")
    assert err == (f"bayes-prune: error: {table}: row 3, column 'acc': 140 is not an accuracy "
                   "(a percentage in [0, 100])")


def test_an_accuracy_of_140_among_fractions_is_refused(tmp_path, capsys):
    table = _table(tmp_path, "density,acc\n1,0.915\n0.8,140\n0.64,0.901\n")
    err = _refused(tmp_path, capsys, table, "--set", "seed=0", "--map", "accuracy=acc",
                   "--map", "density=density")
    assert err == (f"bayes-prune: error: {table}: row 3, column 'acc': 140 is above 1 while "
                   "row 2 holds 0.915: fractions or percentages? give --units fraction or "
                   "--units percent")


def test_a_sparsity_column_that_is_a_density_is_refused(tmp_path, capsys):
    options = ("--set", "seed=0", "--map", "accuracy=acc", "--map", "sparsity=sparsity")
    with_dense = _table(tmp_path, "sparsity,acc\n1,0.915\n0.8,0.91\n0.64,0.901\n")
    err = _refused(tmp_path, capsys, with_dense, *options)
    assert err == (f"bayes-prune: error: {with_dense}: row 2, column 'sparsity': sparsity 1 "
                   "leaves density 0; if this column holds densities (1 = dense), map it as "
                   "density=COLUMN")
    pruned_only = _table(tmp_path, "round,sparsity,acc\n1,0.8,0.91\n2,0.64,0.901\n"
                                   "3,0.512,0.89\n", "p.csv")
    err = _refused(tmp_path, capsys, pruned_only, *options, "--map", "round=round")
    assert err == (f"bayes-prune: error: {pruned_only}: row 3, column 'sparsity': density 0.36 "
                   "at round 2 exceeds 0.2 at round 1 of the same run (row 2); a sparsity "
                   "rises with round: does this column hold densities? map it as "
                   "density=COLUMN")


def test_other_bad_cells_are_refused_with_row_and_column(tmp_path, capsys):
    table = _table(tmp_path, "density,acc,task\n1,0.9,x\n0.8,abc,x\n")
    err = _refused(tmp_path, capsys, table, "--set", "seed=0", "--map", "accuracy=acc",
                   "--map", "density=density")
    assert err.endswith(f"{table}: row 3, column 'acc': 'abc' is not a number")
    err = _refused(tmp_path, capsys, table, "--set", "seed=0", "--map", "accuracy=nope")
    assert "no column 'nope'; the table has 'density', 'acc', 'task'" in err
    table = _table(tmp_path, "density,acc\n1,0.9\n0.7,0.8\n", "r.csv")
    err = _refused(tmp_path, capsys, table, "--set", "seed=0", "--map", "accuracy=acc",
                   "--map", "density=density")
    assert err.endswith("row 3, column 'density': density 0.7 is 1.60 rounds of pruning 0.2 a "
                        "round, not a whole number; map a round column, or set "
                        "--prune-fraction")


def test_an_unknown_task_needs_its_random_error(tmp_path, capsys):
    table = _table(tmp_path, "density,acc\n1,0.9\n0.8,0.8\n")
    base = ["--map", "accuracy=acc", "--map", "density=density", "--set", "seed=0",
            "--set", "task=my-data"]
    err = _refused(tmp_path, capsys, table, *base)
    assert "row 2, column '--set task': 'my-data' is not a task bayes_prune knows" in err
    code, out = _run(tmp_path, table, *base, "--set", "n_classes=4")
    assert code == 0 and read_grid(out)["random_error"].tolist() == [0.75, 0.75]
