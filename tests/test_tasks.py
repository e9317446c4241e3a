"""Task loaders: seeded class-balanced subsamples, fixed test sets, on-disk formats."""

import gzip
import pickle
import struct

import numpy as np
import pytest

from bayes_prune import tasks
from bayes_prune.errors import UserError


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                     *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_dir(tmp_path):
    rng = np.random.default_rng(0)
    for stem, n in (("train", 200), ("t10k", 50)):
        _write_idx(tmp_path / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{stem}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def test_fashion_mnist_from_idx_files(fashion_dir, monkeypatch):
    monkeypatch.setattr(tasks, "FASHION_DIRS", ())
    tasks._pool.cache_clear()
    data = tasks.load_task("fashion-mnist", 100, seed=3, data_dir=str(fashion_dir))
    assert tuple(data.x_train.shape) == (100, 1, 28, 28)
    assert data.y_train.bincount().tolist() == [10] * 10
    assert tuple(data.x_test.shape) == (50, 1, 28, 28)


def test_cifar10_from_python_batches(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1", 60), ("data_batch_2", 40), ("test_batch", 20)):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": list(np.arange(n) % 10)}
        (base / name).write_bytes(pickle.dumps(batch))
    tasks._pool.cache_clear()
    data = tasks.load_task("cifar10", 50, seed=0, data_dir=str(tmp_path))
    assert tuple(data.x_train.shape) == (50, 3, 32, 32) and data.y_test.numel() == 20


def test_missing_files_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "FASHION_DIRS", ())
    monkeypatch.setitem(__import__("sys").modules, "torchvision", None)
    tasks._pool.cache_clear()
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        tasks.load_task("fashion-mnist", 100, seed=0, data_dir=str(tmp_path))
    tasks._pool.cache_clear()


def test_subsample_is_seeded_balanced_and_test_set_fixed():
    a = tasks.load_task("digits", 300, seed=1)
    b = tasks.load_task("digits", 300, seed=1)
    c = tasks.load_task("digits", 600, seed=2)
    assert (a.x_train == b.x_train).all() and not (a.y_train == c.y_train[:300]).all()
    assert a.y_train.bincount().tolist() == [30] * 10
    assert (a.x_test == c.x_test).all() and a.y_test.numel() == 497
    with pytest.raises(UserError, match="n_train=5000 is outside 1..1300"):
        tasks.load_task("digits", 5000, seed=0)


def test_mnist1d_is_generated_offline_with_a_fixed_test_set():
    small = tasks.load_task("mnist1d", 100, seed=0)
    large = tasks.load_task("mnist1d", 4000, seed=5)
    assert tuple(small.x_train.shape) == (100, 1, 40)
    assert small.y_test.numel() == tasks.MNIST1D_TEST
    assert (small.x_test == large.x_test).all()


def test_a_subsample_can_take_the_whole_pool_when_a_class_is_short():
    """scikit-learn's digits pool of 1,300 holds 121-136 per class: n_train=1300 (what
    TaskInfo advertises) takes every example, a short class gives all it has and the others
    make up the rest; where every class has its share, the draw is the equal one."""
    _, ys, _, _ = tasks._pool("digits", None)
    counts = np.bincount(ys)
    assert counts.min() < len(ys) // 10  # the case: one class is short of an equal share
    whole = tasks.balanced_subsample(ys, len(ys), 0)
    np.testing.assert_array_equal(whole, np.arange(len(ys)))
    big = tasks.balanced_subsample(ys, 1250, 1)
    per = np.bincount(ys[big], minlength=10)
    assert len(np.unique(big)) == 1250
    short = counts < 125
    np.testing.assert_array_equal(per[short], counts[short])  # all it has
    assert per[~short].max() - per[~short].min() <= 1  # the rest shared equally
    per = np.bincount(ys[tasks.balanced_subsample(ys, 650, 0)], minlength=10)
    assert set(per) == {65}
    with pytest.raises(UserError, match="outside 1..1300"):
        tasks.balanced_subsample(ys, 1301, 0)
    data = tasks.load_task("digits", 1300, 0)
    assert data.y_train.numel() == 1300
