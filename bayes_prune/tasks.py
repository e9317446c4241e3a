"""Tasks: the data sets an IMP grid trains on.

This module's top level is torch-free (the inference and query paths read task metadata from
it); loaders import torch when called.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError


@dataclass(frozen=True)
class TaskInfo:
    """What the inference side needs to know of a task without loading it."""

    name: str
    n_classes: int
    input_shape: tuple[int, ...]  # one example, channels first

    @property
    def random_error(self) -> float:
        """Error of guessing uniformly at random (the law's ``eps0``)."""
        return 1.0 - 1.0 / self.n_classes


TASKS: dict[str, TaskInfo] = {
    info.name: info
    for info in (
        TaskInfo("mnist1d", 10, (1, 40)),
        TaskInfo("fashion-mnist", 10, (1, 28, 28)),
        TaskInfo("digits", 10, (1, 8, 8)),
        TaskInfo("cifar10", 10, (3, 32, 32)),
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
