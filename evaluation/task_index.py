"""lm-eval's index of its built-in tasks, built once per process (it takes seconds): the recipe's checks
(pipeline/recipe/validate_metrics.py) and the plan's keys (pipeline/engine/eval_inputs.py) read the same one."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def builtin_task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager()
