"""The task registry: each task lives in ``scandx/tasks/<name>/`` and registers a
``core.task.Task`` here. Tasks are imported on first use, so ``scandx --help`` stays fast.

Adding a task: write ``scandx/tasks/<name>/task.py`` with a ``Task`` subclass and add
one line to ``_TASKS`` below (see docs/design.md, "Adding a task").
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from scandx.core.task import Task
from scandx.errors import ScandxError

# name -> "module:attribute" of its Task instance; order = recognition order
_TASKS = {
    "segmentation": "scandx.tasks.segmentation.task:TASK",
    "classification": "scandx.tasks.classification.task:TASK",
    "pretrain": "scandx.tasks.pretrain.task:TASK",  # never recognised: scandx pretrain
}
_loaded: dict[str, Task] = {}


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise ScandxError(f"unknown task {name!r}; known: {', '.join(_TASKS)}")
    if name not in _loaded:
        module, attr = _TASKS[name].split(":")
        _loaded[name] = getattr(importlib.import_module(module), attr)
    return _loaded[name]


def task_names() -> list[str]:
    return list(_TASKS)


def task_for_data(data: str | Path) -> Task:
    """The task whose data ``data`` is (segmentation layouts are specific; anything
    else is classification's, whose readers give the precise error)."""
    for name in _TASKS:
        task = get_task(name)
        if task.recognises(data):
            return task
    return get_task("classification")


def task_for_plan(d: dict[str, Any], where: str = "plan") -> Task:
    for name in _TASKS:
        task = get_task(name)
        if d.get("task") in task.plan_tasks:
            return task
    raise ScandxError(f"plan of an unknown task {d.get('task')!r}", where)


def task_for_run(run: str | Path) -> Task:
    path = Path(run) / "plan.json"
    if not path.exists():
        raise ScandxError("not a scandx run (plan.json missing); run scandx train first", run)
    from scandx.core.plan import read_plan_json

    return task_for_plan(read_plan_json(path), str(path))
