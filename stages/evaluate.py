"""Stage: held-out evaluation. General suite WITHOUT the soft prompt, target task WITH it where one exists.

Adapters are attached by their scope (stages/handoff.py), never by which stage kind made them."""

from __future__ import annotations

import json
import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from core.atomic import write_json
from stages.context import StageContext, StageResult
from stages.handoff import Scope

log = logging.getLogger(__name__)

# Under a multi-process launch rank 0 evaluates alone (it loads the saved checkpoint from disk) and the
# orchestrator hands its result to the other ranks: scoring N times would give N identical copies.
MAIN_PROCESS_ONLY = True
IN_RECIPES = False  # planned by the orchestrator after every stage, never written in a recipe
# {task: {doc_id: value}}: each task's primary metric per example, in the stage folder. The base's is what every
# later evaluation pairs its own with (paired_stderr): both are scored on the same examples.
PER_EXAMPLE = "per_example.json"


@dataclass
class Config:
    """Evaluation settings; built by the orchestrator from the recipe's `evaluation` section."""

    name: str = "evaluate"
    limit: int | None = 100  # examples per general / domain task
    target_limit: int | None = None  # examples of the target's test set (None: all of them)
    batch_size: int = 64
    # General and domain suites through the tokenizer's chat template (lm-eval's apply_chat_template). The
    # target's rows are already rendered by their data format with the same template, so it is never applied twice.
    chat_template: bool = False

    kind = "evaluate"


def evaluation_device() -> str:
    """This process's GPU when it has one (LOCAL_RANK's under a launcher), else the CPU."""
    import os

    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"


def run(config: Config, ctx: StageContext) -> StageResult:
    """Score the checkpoint on the general suite and the target suite; returns results rows."""
    from evaluation.format_leak import format_leak_share
    from evaluation.harness import evaluate_suite
    from stages.model_io import attach_adapter, load_model

    labels = ctx.extra.get("labels") or []
    handoff = ctx.handoff
    model, tokenizer = load_model(handoff.model_dir, ctx.trust_remote_code)
    model.to(evaluation_device()).eval()  # lm-eval scores a model object where it lies: on the GPU, if there is one
    everywhere = handoff.attached(Scope.EVERY_SUITE)  # an unmerged LoRA fine-tune: part of the model for every suite
    if everywhere is not None:
        model = attach_adapter(model, everywhere.path)
    # The evaluation window is the model's own context (answers can be longer than training rows).
    settings = {"batch_size": config.batch_size, "max_length": None}
    suites = ctx.extra["suites"]
    # A target-scoped adapter (a soft prompt) is only for the task it was tuned on: every other task sees the
    # model without it, scored before it is attached at all. While only such adapters were trained, those suites
    # would score exactly as the base model did: its rows are taken, not computed again.
    results, base_rows = [], ctx.extra.get("base_rows")
    reused = base_rows if base_rows is not None and handoff.weights_are_base() else None
    if reused is not None:
        reused = [row for row in reused if row["suite"] != "target"]
        log.info("suites without the prompt: the base model's weights, so its %d rows are reused", len(reused))
    for suite, _ in [s for s in suites if not s[1] and reused is None]:
        results += _scored(
            evaluate_suite(
                model, tokenizer, suite, limit=config.limit, apply_chat_template=config.chat_template, **settings
            ),
            suite,
        )
    tasks = ctx.extra.get("target_of_suite") or {}  # several targets: each is scored with the adapter that serves it
    prompted = [(suite, handoff.attached(Scope.TARGET, tasks.get(suite.name))) for suite, attach in suites if attach]
    # The targets no adapter serves are scored first, on the plain model: once PEFT has wrapped it, a LoRA adapter
    # sits in its layers. Rows keep the suites' order.
    with_adapters, scored = TargetScorers(model), {}
    for suite, adapter in sorted(prompted, key=lambda pair: pair[1] is not None):  # stable: suites' order otherwise
        scored[suite.name] = _scored(
            evaluate_suite(with_adapters.get(adapter), tokenizer, suite, limit=config.target_limit, **settings), suite
        )
    results += [r for suite, _ in prompted for r in scored[suite.name]]

    rows = list(reused or []) + [row for r in results for row in _rows(r)]
    values = {r.task: r.per_example for r in results if r.per_example is not None}
    # Only the base's own evaluation is handed no base values (the orchestrator hands them to every later one):
    # paired with itself, every difference is 0, so its rows' paired_stderr is 0.
    base_values = ctx.extra["base_per_example"] if "base_per_example" in ctx.extra else values
    if reused is not None:  # the base's rows, so the base's values
        values = {**{t: v for t, v in (base_values or {}).items() if t in {row["task"] for row in reused}}, **values}
    write_json(ctx.stage_dir / PER_EXAMPLE, values)
    rows = [_with_paired_stderr(row, values, base_values or {}) for row in rows]
    if labels:
        from evaluation.format_leak import in_label_format

        for r in results:
            # Only generated answers can leak the format (a multiple-choice task's answer is one of its choices),
            # and only on tasks whose own answers are not in the label format.
            if (
                r.suite_kind == "general"
                and r.generated
                and not any(in_label_format(ref, set(labels)) for ref in r.references)
            ):
                leak = format_leak_share(r.responses, labels)
                rows.append(
                    {
                        "task": r.task,
                        "suite": r.suite_kind,
                        "metric": "format_leak",
                        "score": leak,
                        "n": r.n,
                        "stderr": _share_stderr(leak, r.n),
                        "primary": 1,
                    }
                )
    from stages.tracking import log_scores

    log_scores(ctx.tracking, rows)
    samples = {r.task: r.responses[:20] for r in results}
    return StageResult(model_dir=handoff.model_dir, rows=rows, metrics={"samples": samples})


class TargetScorers:
    """The model with one target-scoped adapter attached, or none: the first adapter wraps the model with PEFT, each
    further one is loaded next to it (PeftModel.load_adapter) and made the active one, never wrapped twice. The
    plain model is only handed out before the first adapter: a LoRA adapter, once loaded, is in the model's layers."""

    def __init__(self, model):
        self.model, self.peft, self.names = model, None, {}

    def get(self, adapter):
        from stages.model_io import attach_adapter

        if adapter is None:  # the plain model, asked for before any adapter wrapped it (see run)
            if self.peft is not None:
                raise RuntimeError("a target without an adapter must be scored before any adapter is attached")
            return self.model
        name = self.names.setdefault(str(adapter.path), f"target{len(self.names)}")
        if self.peft is None:
            self.peft = attach_adapter(self.model, adapter.path, name=name)
        elif name not in self.peft.peft_config:
            self.peft.load_adapter(str(adapter.path), adapter_name=name, is_trainable=False)
        self.peft.set_adapter(name)
        return self.peft


def _scored(results: list, suite) -> list:
    """Say what was scored, n included: a cap on examples is never silent."""
    counts = sorted({r.n for r in results})
    mean = sum(r.score for r in results) / len(results)
    log.info(
        "%s %s: %s %.3f over %d task(s), n = %s per task",
        suite.suite_kind,
        suite.name,
        results[0].metric,
        mean,
        len(results),
        "/".join(map(str, counts)),
    )
    return results


def _share_stderr(share: float, n: int) -> float | None:
    """The standard error of a share of n answers (sd with ddof 1 over 0/1 values, over sqrt(n))."""
    return (share * (1 - share) * n / (n - 1)) ** 0.5 / n**0.5 if n > 1 else None


def _rows(result) -> list[dict]:
    """The task's score (primary) and its other metrics, each with its standard error."""
    row = {"task": result.task, "suite": result.suite_kind, "n": int(result.n)}
    rows = [{**row, "metric": result.metric, "score": float(result.score), "stderr": result.stderr, "primary": 1}]
    for metric, (score, stderr) in result.extra.items():
        if 0.0 <= score <= 1.0:
            rows.append({**row, "metric": metric, "score": score, "stderr": stderr, "primary": 0})
    return rows


def _with_paired_stderr(row: dict, values: dict, base_values: dict) -> dict:
    """A task's primary score row with the paired standard error of its difference from the base's score."""
    if row["metric"] == "format_leak" or not row.get("primary", 1):
        return row
    return {**row, "paired_stderr": paired_stderr(values.get(row["task"]), base_values.get(row["task"]))}


def paired_stderr(values: dict | None, base: dict | None) -> float | None:
    """The standard error of (stage mean - base mean) on the same examples: sd (ddof 1) of the per-example
    differences over the doc_ids both scored, over sqrt(n). Adding the two variances instead ignores that an example
    hard for the base is mostly hard for the stage too. None without both values or with fewer than 2 docs shared."""
    shared = sorted(set(values or {}) & set(base or {}))
    if len(shared) < 2:
        return None
    return statistics.stdev(values[doc] - base[doc] for doc in shared) / math.sqrt(len(shared))


def read_per_example(stage_dir: Path) -> dict | None:
    """An evaluation's per-example values ({task: {doc_id: value}}); None where it wrote none (an older run)."""
    path = Path(stage_dir) / PER_EXAMPLE
    if not path.is_file():
        return None
    found = json.loads(path.read_text())
    return {task: {int(doc): value for doc, value in docs.items()} for task, docs in found.items()}
