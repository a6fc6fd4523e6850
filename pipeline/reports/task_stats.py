"""Per task: what a forgetting can show. From the per-example scores every evaluation writes (per_example.json).

For a stage and the base, scored on the same examples (doc ids), the differences d = stage - base per example give
- the paired standard error, sd(d) / sqrt(n) (sd with ddof 1), as results.csv's paired_stderr;
- the minimum detectable effect at K = 2 standard errors, K * sd(d) / sqrt(n): a smaller forgetting cannot be told
  from zero;
- the examples needed to see a drop of DROP = 0.03 at K standard errors, ceil((K * sd(d) / DROP)^2);
- the flips: examples right at the base and wrong after (right -> wrong), and the reverse. "Right" is a value of at
  least 0.5 (every primary metric here is 0 or 1 per example).
Where no pair exists (the base itself) or the stage changed no answer (sd(d) = 0 says nothing about the next
stage), the examples needed come from the base's own per-example sd: a difference of two unpaired scores has
variance 2 var(base), the bound for a stage that answers independently of the base ("base, unpaired").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

K = 2.0  # standard errors a forgetting must exceed to be seen
DROP = 0.03  # the drop the examples needed are sized for
RIGHT = 0.5  # a per-example value at least this is right


def _sd(values: list[float]) -> float:
    """Sample standard deviation (ddof 1); 0 for fewer than 2 values."""
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def examples_needed(sd: float, drop: float = DROP, k: float = K) -> int | None:
    """The n at which k standard errors (sd / sqrt(n)) shrink to `drop`; None when sd is 0 or unknown."""
    if not sd == sd or sd <= 0:
        return None
    return math.ceil((k * sd / drop) ** 2)


@dataclass(frozen=True)
class Paired:
    """A stage against the base on one task, over the examples both scored."""

    n: int
    difference: float  # mean of stage - base
    difference_sd: float  # sd (ddof 1) of the per-example differences
    right_to_wrong: int
    wrong_to_right: int
    base_sd: float  # sd (ddof 1) of the base's per-example values

    @property
    def se(self) -> float:
        """The paired standard error of the difference."""
        return self.difference_sd / math.sqrt(self.n) if self.n else float("nan")

    @property
    def detectable(self) -> float:
        """The minimum detectable effect: K paired standard errors."""
        return K * self.se

    @property
    def needed(self) -> tuple[int | None, str]:
        """Examples needed to see a DROP at K standard errors, and what the sd came from."""
        if self.difference_sd > 0:
            return examples_needed(self.difference_sd), "paired"
        return base_needed(self.base_sd), "base, unpaired"


def base_needed(base_sd: float) -> int | None:
    """Examples needed from the base alone: the unpaired difference's sd, sqrt(2) * the base's sd."""
    return examples_needed(math.sqrt(2) * base_sd)


def paired(base: dict, stage: dict) -> Paired:
    """Compare per-example values ({doc_id: value}, ids as int or as JSON's strings) on the ids both have."""
    base = {str(k): float(v) for k, v in base.items()}
    stage = {str(k): float(v) for k, v in stage.items()}
    common = [k for k in base if k in stage]
    diffs = [stage[k] - base[k] for k in common]
    return Paired(
        n=len(common),
        difference=sum(diffs) / len(diffs) if diffs else float("nan"),
        difference_sd=_sd(diffs),
        right_to_wrong=sum(base[k] >= RIGHT > stage[k] for k in common),
        wrong_to_right=sum(stage[k] >= RIGHT > base[k] for k in common),
        base_sd=_sd([base[k] for k in common]),
    )


def evaluation_folder(run_dir: Path, stages: dict, recipe: str, seed: int, stage: str) -> Path:
    """The folder of a results row's evaluation: the base's, or the stage's `-eval` (a reused one's original)."""
    if stage == "base":
        return run_dir / "base" / "evaluate"
    stage_id, seen = f"seed{seed}/{recipe}/{stage}-eval", set()
    while (stages.get(stage_id) or {}).get("reused_from") and stage_id not in seen:
        seen.add(stage_id)
        stage_id = stages[stage_id]["reused_from"]
    return run_dir / stage_id


def read_values(folder: Path) -> dict:
    """{task: {doc_id: value}} from the folder's per_example.json ({} when missing or unreadable)."""
    try:
        values = json.loads((folder / "per_example.json").read_text())
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}


def task_rows(frame, run_dir: Path) -> list[dict]:
    """One row per (recipe, stage, general task), base first: forgetting and paired standard error (results.csv),
    detectable effect, examples needed and flips (per_example.json). Several seeds: means, and flips summed."""
    from pipeline.engine.migrate import read_manifest
    from pipeline.reports.results import GROUP, scored

    run_dir = Path(run_dir)
    try:
        stages = read_manifest(run_dir / "manifest.json").get("stages") or {}
    except (OSError, ValueError, AttributeError):
        stages = {}
    general = scored(frame)
    general = general[general.suite == "general"]
    base_scores = {(r.recipe, r.seed, r.task): r.score for r in general[general.stage == "base"].itertuples()}
    cache: dict[Path, dict] = {}

    def values(recipe, seed, stage, task):
        folder = evaluation_folder(run_dir, stages, recipe, seed, stage)
        if folder not in cache:
            cache[folder] = read_values(folder)
        found = cache[folder].get(task)
        return found if isinstance(found, dict) else None

    rows = []
    keys = ["recipe", "stage", "task"]
    shown_base = set()
    for (recipe, stage, task), seeds in general.groupby(keys, sort=False):
        if stage == "base":  # one evaluation of the base serves every recipe: its rows once
            if task in shown_base:
                continue
            shown_base.add(task)
        per_seed = []
        for r in seeds.itertuples():
            base = values(recipe, r.seed, "base", task)
            stage_values = values(recipe, r.seed, stage, task) if stage != "base" else base
            pair = paired(base, stage_values) if base is not None and stage_values is not None else None
            per_seed.append((r, base_scores.get((recipe, r.seed, task), float("nan")), pair))
        row = {"recipe": "(all)" if stage == "base" else recipe, "stage": stage, "task": task}
        if GROUP in seeds.columns:
            row["group"] = str(seeds[GROUP].iloc[0]) if seeds[GROUP].iloc[0] == seeds[GROUP].iloc[0] else ""
        row["n"] = int(seeds.n.iloc[0])
        pairs = [p for _, _, p in per_seed if p is not None]
        if stage == "base":
            needed = base_needed(_mean([p.base_sd for p in pairs])) if pairs else None
            row.update(
                {
                    "score": _mean([r.score for r, _, _ in per_seed]),
                    "forgetting": None,
                    "paired se": None,
                    "detectable (2 se)": None,
                    f"n for -{DROP:g}": needed,
                    "from": "base, unpaired" if needed is not None else None,
                    "right→wrong": None,
                    "wrong→right": None,
                }
            )
        else:
            se = _mean([float(r.paired_stderr) for r, _, _ in per_seed])
            needed = [p.needed for p in pairs]
            sources = sorted({source for count, source in needed if count is not None})
            counts = [count for count, _ in needed if count is not None]
            row.update(
                {
                    "score": _mean([r.score for r, _, _ in per_seed]),
                    "forgetting": _mean([r.score - b for r, b, _ in per_seed]),
                    "paired se": se,
                    "detectable (2 se)": K * se if se == se else None,
                    f"n for -{DROP:g}": max(counts) if counts else None,
                    "from": " / ".join(sources) or None,
                    "right→wrong": sum(p.right_to_wrong for p in pairs) if pairs else None,
                    "wrong→right": sum(p.wrong_to_right for p in pairs) if pairs else None,
                }
            )
        rows.append(row)
    return rows


def _mean(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")


def section(frame, run_dir: Path) -> list[str]:
    """The report's per-task statistics: a heading, what the columns mean, and the table ([] without general rows)."""
    import pandas as pd

    rows = task_rows(frame, run_dir)
    if not rows:
        return []
    table = pd.DataFrame(rows)
    for column in ("score", "forgetting", "paired se", "detectable (2 se)"):
        table[column] = [_number(v, "{:+.3f}" if column == "forgetting" else "{:.3f}") for v in table[column]]
    for column in (f"n for -{DROP:g}", "right→wrong", "wrong→right"):
        table[column] = [_number(v, "{:.0f}") for v in table[column]]
    table["from"] = [v if isinstance(v, str) else "–" for v in table["from"]]
    seeds = frame.seed.nunique()
    return [
        "## Per task: forgetting, what it can detect, flips",
        f"Each general task's forgetting (stage − base) with its paired standard error and the smallest forgetting "
        f"it can detect, {K:g} paired standard errors; `n for -{DROP:g}` is the examples needed to see a "
        f"{DROP:g} drop at {K:g} standard errors, from the per-example differences' sd (`paired`) or, on the base "
        f"row and where a stage changed no answer, from the base's own sd as an unpaired difference "
        f"(`base, unpaired`: variance 2·var(base)); flips count examples right at the base and wrong after, and "
        f"the reverse (per_example.json; `–` where an evaluation has none)"
        + (f"; over {seeds} seeds: means, the larger n, flips summed." if seeds > 1 else ".")
        + " pipeline/reports/task_stats.py.",
        table.to_markdown(index=False, disable_numparse=True),
    ]


def _number(value, spec: str) -> str:
    if value is None or value != value:
        return "–"
    return spec.format(value)
