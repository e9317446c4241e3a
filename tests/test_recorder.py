"""Recorder: rounds committed to the store `grid run` writes, read back by `grid export`;
resumable; contradictions and bad values refused."""

import pytest

from bayes_prune import Recorder
from bayes_prune.cli import main
from bayes_prune.errors import UserError
from bayes_prune.grid import read_grid

CONFIG = dict(task="digits", arch="mlp", depth=1, width=8, n_train=1300, seed=0,
              params_total=610, params_prunable=592)


def test_rounds_are_exported_as_a_grid(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    with Recorder(store, **CONFIG) as rec:
        for r in range(4):
            rec.log(r, density=0.8 ** r, test_error=0.1 + 0.02 * r, n_test=497)
        rec.finish()
    out = tmp_path / "g.csv"
    assert main(["grid", "export", "--store", str(store), "-o", str(out)]) == 0
    grid = read_grid(out)
    assert grid["round"].tolist() == [0, 1, 2, 3]
    assert grid["params_nonzero"].tolist() == [610, 18 + 474, 18 + 379, 18 + 303]
    assert grid["test_mistakes"].tolist() == [50, 60, 70, 80]
    assert main(["grid", "status", "--store", str(store)]) == 0
    assert "mlp/digits: 1 done, 0 running or interrupted, 0 failed" in capsys.readouterr().out


def test_resumes_and_refuses_contradictions(tmp_path):
    store = tmp_path / "s.sqlite"
    Recorder(store, **CONFIG).log(0, density=1.0, test_error=0.1, n_test=497)
    again = Recorder(store, **CONFIG)  # the same run, opened again
    assert again.rounds == [0]
    again.log(0, density=1.0, test_error=0.1, n_test=497)  # the same values: nothing happens
    with pytest.raises(UserError, match=r"round 0 of run \w+ is stored with density 1, "
                                        r"test_error 0.1, n_test 497; logged again with 1, "
                                        r"0.2, 497: a round is recorded once"):
        again.log(0, density=1.0, test_error=0.2, n_test=497)
    with pytest.raises(UserError, match="round 1: density 1 does not fall from round 0's 1"):
        again.log(1, density=1.0, test_error=0.2, n_test=497)
    with pytest.raises(UserError, match=r"round 2: test_error=1.4 is not in \[0, 1\]"):
        again.log(2, density=0.64, test_error=1.4, n_test=497)
    other = Recorder(store, **{**CONFIG, "seed": 1})
    assert other.run_id != again.run_id and other.rounds == []


def test_unknown_task_needs_its_random_error(tmp_path):
    store = tmp_path / "s.sqlite"
    with pytest.raises(UserError, match="task 'my-data' is not one bayes_prune knows"):
        Recorder(store, **{**CONFIG, "task": "my-data"})
    rec = Recorder(store, **{**CONFIG, "task": "my-data", "n_classes": 4})
    rec.log(0, density=1.0, test_error=0.3, n_test=100)
    out = tmp_path / "g.csv"
    assert main(["grid", "export", "--store", str(store), "-o", str(out)]) == 0
    assert read_grid(out)["random_error"].tolist() == [0.75]
    with pytest.raises(UserError, match="depth=0 is not an integer >= 1"):
        Recorder(store, **{**CONFIG, "depth": 0})
