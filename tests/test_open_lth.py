"""`bayes-prune import open-lth` on the real open_lth tree in ../shared/external/open_lth_runs,
checked against values read from its files here by other means (regexes, not the importer's
parsers), and on damaged copies of it."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bayes_prune.cli import main
from bayes_prune.grid import read_grid

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TREE = SHARED / "external" / "open_lth_runs"
pytestmark = pytest.mark.skipif(not TREE.is_dir(), reason="../shared/external is not here")


def _expected(skip_nonuniform: bool) -> pd.DataFrame:
    """One row per level, straight from the files: accuracy of the last logger line named
    test_accuracy with the largest iteration, U/T of the report, the model from hparams.log."""
    rows = []
    for hp in sorted(TREE.glob("lottery_*/replicate_*/level_0/main/hparams.log")):
        text = hp.read_text()
        model = re.search(r"model_name => (\S+)", text).group(1)
        hidden = [int(x) for x in model.split("_")[2:]]
        if skip_nonuniform and len(set(hidden)) > 1:
            continue
        fraction = float(re.search(r"subsample_fraction => ([\d.]+)", text).group(1))
        rep = hp.parents[2]
        for level in sorted(rep.glob("level_[0-9]*")):
            log = (level / "main" / "logger").read_text()
            acc = {int(i): float(v) for i, v in re.findall(r"test_accuracy,(\d+),([\d.]+)", log)}
            rep_json = json.loads((level / "main" / "sparsity_report.json").read_text())
            rows.append({"run_id": f"{rep.parent.name}/{rep.name}",
                         "seed": int(rep.name.split("_")[1]),
                         "round": int(level.name.split("_")[1]),
                         "depth": len(hidden), "width": hidden[0],
                         "n_train": round(60000 * fraction),
                         "density": rep_json["unpruned"] / rep_json["total"],
                         "test_error": 1 - acc[max(acc)]})
    return pd.DataFrame(rows).sort_values(["run_id", "round"]).reset_index(drop=True)


def test_import_matches_the_files(tmp_path, capsys):
    out = tmp_path / "olth.csv"
    assert main(["import", "open-lth", str(TREE), "-o", str(out),
                 "--task", "mnist=fashion-mnist"]) == 0
    captured = capsys.readouterr()
    assert "wrote 112 rows (16 runs, 8 configurations; density 0.262-1)" in captured.out
    # the four replicates of mnist_lenet_300_100, one line each
    assert captured.err.count("unequal width (300, 100)") == 4
    grid = read_grid(out).sort_values(["run_id", "round"]).reset_index(drop=True)
    want = _expected(skip_nonuniform=True)
    assert len(grid) == len(want) == 112
    assert grid["run_id"].nunique() == 16
    assert set(grid["task"]) == {"fashion-mnist"} and set(grid["arch"]) == {"mlp"}
    assert set(grid["n_train"]) == {6000, 18000} and set(grid["n_test"]) == {10000}
    for col in ("run_id", "seed", "round", "depth", "width", "n_train"):
        assert grid[col].tolist() == want[col].tolist(), col
    for col in ("density", "test_error"):
        assert grid[col].to_numpy() == pytest.approx(want[col].to_numpy(), abs=1e-12), col
    # open_lth prunes 20 % of every weight in the mask a level: U/T within 1e-3 of 0.8^L
    assert grid["density"].to_numpy() == pytest.approx(0.8 ** grid["round"].to_numpy(),
                                                       abs=1e-3)
    # params_total: the dense LeNet's weights and biases (784-N-10 and 784-N-N-10)
    totals = {(1, 50): 39760, (1, 100): 79510, (2, 50): 42310, (2, 100): 89610}
    for (d, w), total in totals.items():
        assert set(grid.loc[(grid.depth == d) & (grid.width == w), "params_total"]) == {total}


def test_nonuniform_first_and_max(tmp_path, capsys):
    for how, width in (("first", 300), ("max", 300)):
        out = tmp_path / f"{how}.csv"
        assert main(["import", "open-lth", str(TREE), "-o", str(out), "--nonuniform", how]) == 0
        grid = read_grid(out)
        assert len(grid) == len(_expected(skip_nonuniform=False)) == 140
        lenet = grid[grid["source"] == "open_lth:mnist_lenet_300_100"]
        assert len(lenet) == 28 and set(lenet["width"]) == {width} and set(lenet["depth"]) == {2}
        # the real count of 784-300-100-10, not a uniform 300-300 MLP's
        assert set(lenet["params_total"]) == {784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10}
        assert set(grid["task"]) == {"mnist"} and grid["random_error"].eq(0.9).all()


def test_density_from_the_report_agrees_with_the_masks():
    torch = pytest.importorskip("torch")
    masks = sorted(TREE.glob("lottery_*/replicate_*/level_*/main/mask.pth"))
    assert len(masks) == 14
    for path in masks:
        mask = torch.load(path, weights_only=True)
        report = json.loads((path.parent / "sparsity_report.json").read_text())
        assert sum(m.numel() for m in mask.values()) == report["total"]
        assert float(sum(m.sum() for m in mask.values())) == report["unpruned"]


def _copy(tmp_path) -> Path:
    root = tmp_path / "tree"
    shutil.copytree(TREE / "lottery_8710d70503e0b0a1fe387a485a2f1186",
                    root / "lottery_8710d70503e0b0a1fe387a485a2f1186")
    return root


def test_unfinished_levels_and_branches_are_skipped_with_a_line(tmp_path, capsys):
    root = _copy(tmp_path)
    rep = root / "lottery_8710d70503e0b0a1fe387a485a2f1186" / "replicate_1"
    (rep / "level_6" / "main" / "logger").unlink()  # the level still training
    (rep / "level_2" / "lottery_branch_randomly_pruned").mkdir()
    out = tmp_path / "g.csv"
    assert main(["import", "open-lth", str(root), "-o", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any("level_6/main: skipped: unfinished level (no logger)" in e for e in err)
    assert any("lottery_branch_randomly_pruned: skipped: branch" in e for e in err)
    assert len(read_grid(out)) == 13


def test_a_missing_logger_before_a_finished_level_is_refused(tmp_path, capsys):
    root = _copy(tmp_path)
    logger = (root / "lottery_8710d70503e0b0a1fe387a485a2f1186" / "replicate_2" / "level_3"
              / "main" / "logger")
    logger.unlink()
    out = tmp_path / "g.csv"
    assert main(["import", "open-lth", str(root), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0] == (f"bayes-prune: error: {logger}: missing, but level_6 finished; every "
                      "level before a finished one has its logger (an incomplete copy of the "
                      "tree?)")
    assert not out.exists()


def test_a_malformed_logger_line_is_refused_with_its_line(tmp_path, capsys):
    root = _copy(tmp_path)
    logger = (root / "lottery_8710d70503e0b0a1fe387a485a2f1186" / "replicate_1" / "level_1"
              / "main" / "logger")
    logger.write_text(logger.read_text().replace("test_accuracy,141,", "test_accuracy,141,x", 1))
    out = tmp_path / "g.csv"
    assert main(["import", "open-lth", str(root), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{logger}: line 5: 'test_accuracy,141,x" in err and not out.exists()


def test_map_model_names():
    from bayes_prune.open_lth import DATASETS, map_model

    mnist = DATASETS["mnist"]
    assert map_model("mnist_lenet_100_300", mnist, "first").width == 100
    assert map_model("mnist_lenet_100_300", mnist, "max").width == 300
    assert "unequal width (100, 300)" in map_model("mnist_lenet_100_300", mnist, "skip")
    resnet = map_model("cifar_resnet_20", DATASETS["cifar10"], "skip")
    assert (resnet.arch, resnet.depth, resnet.width) == ("resnet", 20, 16)
    assert map_model("cifar_resnet_56_32", DATASETS["cifar10"], "skip").width == 32
    other = map_model("cifar_vgg_16", DATASETS["cifar10"], "skip")
    assert (other.arch, other.depth, other.width, other.extra) == ("cifar_vgg_16", 1, 1, None)
