"""Before anything trains: every general and domain task is one lm-eval task whose metrics lie in [0, 1] and are
higher-is-better, the only scores results.csv, the forgetting (a stage's general mean minus the base's) and the
gate can hold.

A task's metrics are read from its config in lm-eval's task index (the YAML with its includes; no data is loaded):
its `metric_list`, else lm-eval's defaults for its `output_type`. The sign is the task's own `higher_is_better`,
else lm-eval's registry's. The range comes from KNOWN_UNIT below, or from the recipe: `evaluation.unit_metrics`
names metrics of the user's own tasks that lie in [0, 1] and are higher-is-better. A lower-is-better metric, one
of unknown range, a group or tag of tasks (lm-eval's `mmlu`) and a task defined by a Python class (its metrics are
not in a config) are refused in one line each. The target's own task is written by forgetless with a known metric.
"""

from __future__ import annotations

import logging

from evaluation.domain_scoring import CODE_METRIC, LABEL_METRIC, MATH_METRIC

# Metrics whose every value is a mean of 0/1 outcomes (or a probability mass, mc2), so in [0, 1], higher better.
KNOWN_UNIT = {
    "acc",
    "acc_norm",
    "acc_mutual_info",
    "exact_match",
    "mc1",
    "mc2",
    "prompt_level_strict_acc",
    "inst_level_strict_acc",
    "prompt_level_loose_acc",
    "inst_level_loose_acc",  # IFEval
    MATH_METRIC,
    LABEL_METRIC,
    CODE_METRIC,  # forgetless' own scorers (evaluation/domain_scoring.py)
    "contains_answer",  # real_nq_open_chat's 0/1 per answer (evaluation/tasks/real/utils.py)
}
SHOWN = 3


def suites_of(recipe) -> list[tuple[str, object]]:
    """(the recipe field that names it, suite) for the general suite and every domain suite, as the run builds
    them (pipeline/engine/orchestrator.py _suites); names validate.check_suites refused are left out."""
    from evaluation.suites import SUITES, Suite, hub_suite

    ev = recipe.evaluation
    if ev.general_tasks and ev.task_dir:
        found = [
            (
                "evaluation.general_tasks",
                Suite("local:" + ",".join(ev.general_tasks), "general", list(ev.general_tasks), str(ev.task_dir)),
            )
        ]
    elif ev.general_tasks:
        found = [("evaluation.general_tasks", hub_suite(ev.general_tasks, "general"))]
    else:
        found = [("evaluation.general_suite", SUITES[ev.general_suite])] if ev.general_suite in SUITES else []
    return found + [("evaluation.domain_suites", SUITES[name]) for name in ev.domain_suites if name in SUITES]


def check_metrics(recipe) -> list[str]:
    """One line per general or domain task that is not one task with known [0, 1], higher-is-better metrics."""
    from evaluation.harness import TaskLoadError, task_manager_for

    declared = set(recipe.evaluation.unit_metrics)
    problems = []
    for field, suite in suites_of(recipe):
        try:
            index = _index(suite, task_manager_for)
        except TaskLoadError as err:
            problems.append(f"{field}: {err}")
            continue
        for task in suite.tasks:
            problem = task_problem(index[task], declared)
            if problem:
                problems.append(f"{field}: {task!r}: {problem}")
    return problems


def _index(suite, task_manager_for) -> dict:
    """lm-eval's task index for the suite: lm-eval's built-in tasks indexed once per process (it takes seconds, and
    the plan's keys read the same index: evaluation/task_index.py), a folder's checked YAML by YAML (harness)."""
    if suite.include_path is not None:
        return task_manager_for(suite).task_index
    from evaluation.harness import TaskLoadError
    from evaluation.task_index import builtin_task_manager

    index = builtin_task_manager().task_index
    missing = [task for task in suite.tasks if task not in index]
    if missing:
        raise TaskLoadError(f"suite {suite.name!r}: task(s) {missing} not found in lm-eval's built-in tasks")
    return index


def task_problem(entry, declared: set[str]) -> str | None:
    """Why lm-eval's index entry `entry` cannot be scored here, or None."""
    from lm_eval.tasks._index import Kind

    if entry.kind in (Kind.GROUP, Kind.TAG):
        members = _members(entry)
        listed = ", ".join(members[:SHOWN]) + (f", ... {len(members) - SHOWN} more" if len(members) > SHOWN else "")
        return (
            f"is an lm-eval {entry.kind.name.lower()} of tasks ({listed}), not one task; name its tasks "
            "instead (each is scored and reported on its own)"
        )
    if entry.kind is not Kind.TASK or not isinstance(entry.cfg, dict):
        return (
            "is defined by a Python class, so its metrics cannot be read from a config and checked to lie in "
            "[0, 1]; copy it as a task YAML into evaluation.task_dir"
        )
    for name, higher in metrics_of(entry.cfg):
        if higher is False:
            return (
                f"metric {name!r} is lower-is-better (higher_is_better: false); forgetless averages and gates "
                "higher-is-better scores only (a forgetting's sign would flip): put such a metric in a task YAML "
                "of your own (evaluation.task_dir) that reports a higher-is-better one"
            )
        if name not in KNOWN_UNIT and name not in declared:
            sign = "" if higher else " and higher-is-better"
            return (
                f"metric {name!r} is not known to lie in [0, 1]{sign} (results.csv, the forgetting and the gate "
                f"hold scores in [0, 1]); if it does, declare it: evaluation.unit_metrics: [{name}]"
            )
    return None


def metrics_of(cfg: dict) -> list[tuple[str, bool | None]]:
    """(metric, higher_is_better) for every metric a task config reports: its metric_list, else lm-eval's defaults
    for its output_type; the sign is the config's, else lm-eval's registry's (None: unknown)."""
    from lm_eval.api.registry import DEFAULT_METRIC_REGISTRY

    listed = cfg.get("metric_list") or [
        {"metric": m} for m in DEFAULT_METRIC_REGISTRY.get(cfg.get("output_type", "generate_until"), [])
    ]
    found = []
    for item in listed:
        item = item if isinstance(item, dict) else {"metric": item}
        name = str(item.get("metric"))
        found.append((name, item["higher_is_better"] if "higher_is_better" in item else _registered_sign(name)))
    return found


def _registered_sign(metric: str) -> bool | None:
    from lm_eval.api import metrics  # noqa: F401 - fills the registry
    from lm_eval.api.registry import HIGHER_IS_BETTER_REGISTRY

    logger, level = logging.getLogger("lm_eval"), logging.getLogger("lm_eval").level
    logger.setLevel(logging.ERROR)  # its warning for a metric it does not know: the caller says it in one line
    try:
        return HIGHER_IS_BETTER_REGISTRY.get(metric)
    except Exception:  # noqa: BLE001 - not registered
        return None
    finally:
        logger.setLevel(level)


def _members(entry) -> list[str]:
    """A group's or tag's tasks, by name (a group's inline task configs by their task name)."""
    if entry.kind.name == "TAG":
        return sorted(entry.tags)
    listed = (entry.cfg or {}).get("task") or []
    listed = listed if isinstance(listed, list) else [listed]
    return [str(t.get("task", t)) if isinstance(t, dict) else str(t) for t in listed]
