"""Tasks: the data sets an IMP grid trains on.

This module's top level is torch-free (the inference and query paths read task metadata from
it); loaders import torch when called.
"""

from __future__ import annotations

import functools
import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError


@dataclass(frozen=True)
class TaskInfo:
    """What the inference side needs to know of a task without loading it."""

    name: str
    n_classes: int
    input_shape: tuple[int, ...]  # one example, channels first
    train_pool: int  # examples n_train is subsampled from

    @property
    def random_error(self) -> float:
        """Error of guessing uniformly at random (the law's ``eps0``)."""
        return 1.0 - 1.0 / self.n_classes


TASKS: dict[str, TaskInfo] = {
    info.name: info
    for info in (
        TaskInfo("mnist1d", 10, (1, 40), 10_000),
        TaskInfo("fashion-mnist", 10, (1, 28, 28), 60_000),
        TaskInfo("digits", 10, (1, 8, 8), 1_300),
        TaskInfo("cifar10", 10, (3, 32, 32), 50_000),
    )
}


def task_info(name: str) -> TaskInfo:
    """The registered task ``name``; an unknown name is a :class:`UserError` listing the known."""
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def random_error(name: str) -> float:
    """Random-guess error of the registered task ``name``."""
    return task_info(name).random_error


# ---------------------------------------------------------------------------- loaders (torch)

FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)
MNIST1D_TEST = 2_000  # fixed test set of MNIST-1D, generated beside its train pool
DIGITS_TEST = 497  # of load_digits' 1,797 images; the others form the train pool


@dataclass(frozen=True)
class TaskData:
    """A task's tensors: the seeded training subsample and the full, fixed test set."""

    info: TaskInfo
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any


@functools.lru_cache(maxsize=4)
def _pool(name: str, data_dir: str | None):
    """(x_train, y_train, x_test, y_test) as numpy arrays, cached per process."""
    if name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        pool = TASKS["mnist1d"].train_pool
        args.num_samples = pool + MNIST1D_TEST
        args.train_split = pool / args.num_samples
        d = make_dataset(args)  # generated offline, seed fixed by get_dataset_args
        return d["x"][:, None, :], d["y"], d["x_test"][:, None, :], d["y_test"]
    if name == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        order = np.random.default_rng(0).permutation(len(y))
        x = (x / 16.0).reshape(-1, 1, 8, 8)[order]
        y = y[order]
        return x[DIGITS_TEST:], y[DIGITS_TEST:], x[:DIGITS_TEST], y[:DIGITS_TEST]
    if name == "fashion-mnist":
        return _fashion(data_dir)
    return _cifar10(data_dir)


def _read_idx(path: Path) -> np.ndarray:
    with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as f:
        raw = f.read()
    zero, dtype, ndim = raw[0] * 256 + raw[1], raw[2], raw[3]
    if zero != 0 or dtype != 0x08:
        raise UserError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(names: tuple[str, ...], dirs: list[str]) -> Path | None:
    for d in dirs:
        for name in names:
            for suffix in (".gz", ""):
                p = Path(d) / (name + suffix)
                if p.is_file():
                    return p
    return None


def _fashion(data_dir: str | None):
    dirs = ([data_dir] if data_dir else []) + list(FASHION_DIRS)
    parts = []
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        path = _find((stem,), dirs)
        if path is None:
            return _torchvision("FashionMNIST", data_dir, dirs)
        parts.append(_read_idx(path))
    xs, ys, xt, yt = parts
    return xs[:, None] / 255.0, ys, xt[:, None] / 255.0, yt


def _cifar10(data_dir: str | None):
    import pickle

    dirs = [str(Path(d) / "cifar-10-batches-py") for d in ([data_dir] if data_dir else [])]
    dirs += [d.replace("/cifar-10-batches-py", "") for d in dirs]
    base = next((Path(d) for d in dirs if (Path(d) / "test_batch").is_file()), None)
    if base is None:
        return _torchvision("CIFAR10", data_dir, dirs)

    def load(name):
        with open(base / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        return batch[b"data"].reshape(-1, 3, 32, 32) / 255.0, np.asarray(batch[b"labels"])

    train = [load(f"data_batch_{i}") for i in range(1, 6) if (base / f"data_batch_{i}").is_file()]
    xt, yt = load("test_batch")
    return np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), xt, yt


def _torchvision(cls: str, data_dir: str | None, looked_in: list[str]):
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise UserError(f"{cls} files not found in {', '.join(looked_in) or '(no directory)'} "
                        "and torchvision is not installed to download them; pass --data-dir "
                        "or install the files (Fashion-MNIST: apt-get install "
                        "dataset-fashion-mnist)") from None
    root = data_dir or str(Path.home() / ".cache" / "bayes_prune")
    train, test = (getattr(tvd, cls)(root, train=t, download=True) for t in (True, False))
    x, xt = (np.asarray(d.data, dtype=np.float64) / 255.0 for d in (train, test))
    x, xt = ((a[:, None] if a.ndim == 3 else a.transpose(0, 3, 1, 2)) for a in (x, xt))
    return x, np.asarray(train.targets), xt, np.asarray(test.targets)


def balanced_subsample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` examples, as equal per class as ``n`` and the pool allow, drawn with
    ``seed``. A class with fewer examples than its equal share gives them all and the other
    classes make up the rest, so that any ``n`` up to the pool's size can be drawn (scikit-
    learn's digits pool of 1,300 holds 129 of one class); where every class has its share the
    draw is the equal one."""
    if not 0 < n <= len(y):
        raise UserError(f"n_train={n} is outside 1..{len(y)}, the training pool's size")
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(y, return_counts=True)
    per = np.zeros(classes.size, int)
    # water-filling: each round shares what is left equally among the classes not yet
    # exhausted, the first classes taking one more when it does not divide
    while per.sum() < n:
        room = np.flatnonzero(per < sizes)
        share = np.zeros(classes.size, int)
        left = n - per.sum()
        share[room] = left // room.size
        share[room[: left % room.size]] += 1
        per = np.minimum(per + share, sizes)
    picks = [rng.choice(np.flatnonzero(y == c), k, replace=False)
             for c, k in zip(classes, per, strict=True)]
    return np.sort(np.concatenate(picks))


def load_task(name: str, n_train: int, seed: int, device="cpu",
              data_dir: str | None = None) -> TaskData:
    """The task's seeded, class-balanced training subsample of ``n_train`` examples and its
    full test set, standardised with the training pool's mean and std, on ``device``."""
    import torch

    info = task_info(name)
    xs, ys, xt, yt = _pool(name, data_dir)
    if not 0 < n_train <= len(ys):
        raise UserError(f"n_train={n_train} is outside 1..{len(ys)} for task {name!r}")
    idx = balanced_subsample(ys, n_train, seed)
    mean, std = float(xs.mean()), float(xs.std()) or 1.0

    def tensor(a, dtype):
        return torch.tensor(np.asarray(a), dtype=dtype, device=device)

    return TaskData(info, tensor((xs[idx] - mean) / std, torch.float32),
                    tensor(ys[idx], torch.long), tensor((xt - mean) / std, torch.float32),
                    tensor(yt, torch.long))
