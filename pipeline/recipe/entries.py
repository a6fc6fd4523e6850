"""Every registered entry exercised: each stage kind, suite and data format is built once (`pipeline ls --check`).

A registry whose entry fails only when a recipe first names it would fail in a user's run; this builds them all,
so CI and a test catch a broken entry first (the style guide: a test builds every registered entry).
"""

from __future__ import annotations

# One row each data format converts, to show its converter works end to end (data_recipes/formats.py).
SAMPLE_ROWS = {
    "prompt_completion": {"prompt": "Q: 1+1?", "completion": "2"},
    "gsm8k": {"question": "1+1?", "answer": "1+1 is 2.\n#### 2"},
    "alpaca": {"instruction": "Add the numbers.", "input": "1 and 1", "output": "2"},
    "sharegpt": {"conversations": [{"from": "human", "value": "1+1?"}, {"from": "gpt", "value": "2"}]},
    "messages": {"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]},
}


def stage_problems() -> list[str]:
    """Each stage kind imports, builds its default Config, and (where a recipe can name it) declares a contract."""
    from stages import STAGES
    from stages.handoff import Contract

    problems = []
    for kind in STAGES:
        try:
            module = STAGES[kind]
            config = module.Config()
            if getattr(module, "IN_RECIPES", True) and not isinstance(config.contract(), Contract):
                problems.append(f"stage {kind}: contract() is not a stages.handoff.Contract")
            if not callable(getattr(module, "run", None)):
                problems.append(f"stage {kind}: no run(config, ctx)")
        except Exception as err:  # any failure is the entry's problem, reported with the others
            problems.append(f"stage {kind}: {type(err).__name__}: {err}")
    return problems


def suite_problems() -> list[str]:
    """Each suite's tasks are found by lm-eval (its task YAMLs load; none is skipped)."""
    from evaluation.harness import task_manager_for
    from evaluation.suites import SUITES

    problems = []
    for name in SUITES:
        try:
            task_manager_for(SUITES[name])
        except Exception as err:
            problems.append(f"suite {name}: {type(err).__name__}: {err}")
    return problems


def format_problems() -> list[str]:
    """Each data format converts its sample row into a prompt and a completion."""
    from data_recipes.formats import FORMATS

    problems = []
    for name in FORMATS:
        if name not in SAMPLE_ROWS:
            problems.append(f"format {name}: no sample row in pipeline/recipe/entries.py to check it with")
            continue
        try:
            example = FORMATS[name](SAMPLE_ROWS[name], 0)
            if not (example.get("prompt") and example.get("completion")):
                problems.append(f"format {name}: gave {example!r}, not a prompt and a completion")
        except Exception as err:
            problems.append(f"format {name}: {type(err).__name__}: {err}")
    return problems


def problems() -> list[str]:
    """Every registered entry's problems; empty when all build."""
    return stage_problems() + suite_problems() + format_problems()
