"""Checkpoint selection while a stage trains: score a validation split every N steps and keep the best weights.

After transformers' `load_best_model_at_end` (evaluate every N steps, keep the checkpoint of the best
`metric_for_best_model`, load it back at the end), with the scoring of stages/evaluate.py: the target task with the
stage's target-scoped adapter attached (the soft prompt, a target-scoped LoRA), the general suite without it.

Validation data, never test data: the target's rows are held out of the stage's own target training rows (seeded,
by content, so an upsampled row is held out with its copies); the general suite's are the docs after the first
`evaluation.limit` ones that the final evaluation scores (lm-eval's `samples`). The base model's general validation
score, the retention criterion's reference, is scored once before the first step: from the stage's input model when
its weights are the base's (ProMoT's stage 2), else from the base model's folder.

Kept in the stage's trainer folder (removed once the stage is done): `selection/history.json` (every check, written
atomically) and `selection/best-<step>.safetensors` (the trainable weights of the best check so far), so a resumed
stage keeps its history. The kept step is the earliest among equals. Rank 0 scores; every rank loads the kept weights.
"""

from __future__ import annotations

import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from core import ranks
from core.atomic import write_json
from core.errors import UserError
from stages.handoff import Scope
from stages.train_config import Criterion

log = logging.getLogger(__name__)
FOLDER = "selection"  # inside the stage's trainer folder


class Selector:
    """One stage's checkpoint selection: its validation split, its checks, and the kept weights."""

    def __init__(self, config, ctx, model, tokenizer):
        if ctx is None:
            raise UserError(f"{config.name}.selection: this stage kind does not hand run_trainer its context")
        self.config, self.selection, self.ctx, self.model, self.tokenizer = (
            config,
            config.selection,
            ctx,
            model,
            tokenizer,
        )
        self.folder = Path(ctx.stage_dir) / "trainer" / FOLDER
        evaluation = ctx.extra.get("evaluation") or {}
        self.limit, self.batch_size = evaluation.get("limit"), evaluation.get("batch_size", 64)
        self.chat_template = bool(evaluation.get("chat_template"))
        suites = ctx.extra.get("suites") or []
        general = [suite for suite, attach in suites if not attach and suite.suite_kind == "general"]
        targets = [suite for suite, attach in suites if attach]
        if len(targets) != 1 or len(targets[0].tasks) != 1 or len(general) != 1:
            raise UserError(
                f"{config.name}.selection: needs one target task and one general suite "
                f"(this recipe scores {len(targets)} target suite(s))"
            )
        if self.limit is None:
            raise UserError(
                f"{config.name}.selection: evaluation.limit is unset, so the final evaluation scores every "
                f"general doc and none is left to validate on; set evaluation.limit"
            )
        self.general, self.target = general[0], targets[0]
        self.scope = adapter_scope(model, config, ctx)
        self.history, self.reference, self.sizes = [], None, {}

    # ---- the validation split
    def hold_out(self, rows):
        """The training rows without the validation rows, which become the validation target task."""
        import random

        n = self.selection.validation_rows
        keys = list(dict.fromkeys(zip(rows["prompt"], rows["completion"])))
        if len(keys) <= n:
            raise UserError(
                f"{self.config.name}.selection.validation_rows: {n} held out of {len(keys)} distinct "
                f"target rows leaves none to train on"
            )
        held = set(random.Random(self.ctx.seed).sample(keys, n))
        keep = [i for i, key in enumerate(zip(rows["prompt"], rows["completion"])) if key not in held]
        if ranks.is_main():
            self.validation_suite = write_validation_task(self.target, sorted(held), self.folder / "validation")
        self.sizes = {
            "target_rows": n,
            "general_docs": {t: n for t in self.general.tasks},
            "general_docs_from": self.limit,
            "train_rows": len(keep),
        }
        return rows.select(keep)

    # ---- checks
    def start(self, resumed_step: int) -> None:
        """Before training: the history of an earlier attempt up to the step resumed from, and the base's general
        validation score (scored now, from the weights the stage starts with, if no attempt had it)."""
        ranks.from_main(lambda: self._start(resumed_step))

    def _start(self, resumed_step: int) -> None:
        import json

        path = self.folder / "history.json"
        saved = json.loads(path.read_text()) if path.is_file() and resumed_step else {}
        self.history = [c for c in saved.get("checks", []) if c["step"] <= resumed_step]
        self.reference = saved.get("base_general")
        if self.reference is None:
            self.reference = self._base_general()
        self._write()

    def _base_general(self) -> float:
        if self.ctx.handoff.weights_are_base():
            with general_view(self.model, self.scope) as model:
                return self._general(model)
        from stages.model_io import load_model

        base, _ = load_model(self.ctx.handoff.base_dir, self.ctx.trust_remote_code)
        try:
            return self._general(base)
        finally:
            del base

    def check(self, step: int) -> None:
        """Score the model as it is after `step` steps; keep its weights when it is the best so far."""
        ranks.from_main(lambda: self._check(step))

    def _check(self, step: int) -> None:
        if any(c["step"] == step for c in self.history):
            return
        record = {"step": step, **validation_scores(self, self.model)}
        if self.selection.criterion == Criterion.TARGET_WITH_RETENTION:
            record["retained"] = record["general"] >= self.selection.min_general_ratio * self.reference
        self.history.append(record)
        log.info(
            "%s selection at step %d: target %.3f, general %.3f",
            self.config.name,
            step,
            record["target"],
            record["general"],
        )
        if choose(self.history, self.selection)[0] == step:
            save_trainable(self.model, self.folder / f"best-{step}.safetensors")
        self._write()

    def saved(self, step: int) -> None:
        """A resume checkpoint at `step` exists: a resume never goes back before the best check, so older kept
        weights can go."""
        if not ranks.is_main() or not self.history:
            return
        best = choose(self.history, self.selection)[0]
        if best <= step:
            for path in self.folder.glob("best-*.safetensors"):
                if path.name != f"best-{best}.safetensors":
                    path.unlink(missing_ok=True)

    def finish(self, final_step: int) -> dict:
        """Load the kept weights into the model (every rank); returns the metrics that record the choice."""
        chosen = ranks.from_main(lambda: choose(self.history, self.selection))
        step, note = chosen
        if step != final_step:  # the weights in memory are the last step's
            load_trainable(self.model, self.folder / f"best-{step}.safetensors")
        if note:
            log.warning("%s.selection: %s", self.config.name, note)
        history = ranks.from_main(lambda: list(self.history))
        return {
            "selected_step": step,
            "selection_history": history,
            "selection": {
                "criterion": self.selection.criterion.value,
                "every": self.selection.every,
                "min_general_ratio": self.selection.min_general_ratio,
                "base_general": ranks.from_main(lambda: self.reference),
                "validation": self.sizes,
                **({"note": note} if note else {}),
            },
        }

    def _general(self, model) -> float:
        return general_score(self, model)

    def _write(self) -> None:
        write_json(self.folder / "history.json", {"checks": self.history, "base_general": self.reference})

    def callback(self):
        """The TrainerCallback that checks every `every` steps and at the last one."""
        from transformers import TrainerCallback

        selector = self

        class SelectionCallback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step % selector.selection.every == 0 or state.global_step >= state.max_steps:
                    selector.check(state.global_step)

            def on_save(self, args, state, control, **kwargs):
                selector.saved(state.global_step)

        return SelectionCallback()


def choose(history: list[dict], selection) -> tuple[int, str | None]:
    """The kept step and, when no check met the retention bar, a note saying so. Ties: the earliest step."""
    candidates = history
    if selection.criterion == Criterion.TARGET_WITH_RETENTION:
        candidates = [c for c in history if c["retained"]]
        if not candidates:
            best = max(history, key=lambda c: (c["general"], -c["step"]))
            return best["step"], (
                f"no check kept >= {selection.min_general_ratio} of the base's general validation "
                f"score; kept step {best['step']}, the best general score"
            )
    best = max(candidates, key=lambda c: (c["target"], -c["step"]))
    return best["step"], None


def validation_scores(selector: Selector, model) -> dict:
    """{target, general}: the validation target (adapters attached as the final evaluation attaches them) and
    the general suite's validation docs."""
    from evaluation.harness import evaluate_suite

    target = evaluate_suite(model, selector.tokenizer, selector.validation_suite, batch_size=selector.batch_size)
    with general_view(model, selector.scope) as plain:
        general = general_score(selector, plain)
    return {"target": sum(r.score for r in target) / len(target), "general": general}


def general_score(selector: Selector, model) -> float:
    """The mean score of the general suite over its validation docs (after the final evaluation's `limit`)."""
    from evaluation.harness import evaluate_suite

    n, first = selector.selection.validation_rows, selector.limit
    try:
        results = evaluate_suite(
            model,
            selector.tokenizer,
            selector.general,
            batch_size=selector.batch_size,
            apply_chat_template=selector.chat_template,
            samples={task: list(range(first, first + n)) for task in selector.general.tasks},
        )
    except AssertionError as err:  # lm-eval: "Elements of --samples should be in the interval [0,k-1] ..."
        raise UserError(
            f"{selector.config.name}.selection.validation_rows: a general task of {selector.general.name} "
            f"has fewer than evaluation.limit + validation_rows = {first + n} docs ({err})"
        ) from None
    return sum(r.score for r in results) / len(results)


def adapter_scope(model, config, ctx) -> Scope | None:
    """The scope of the adapter the model trains with (None: a plain model), as evaluation will attach it."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return None
    if model.active_peft_config.is_prompt_learning:
        return Scope.TARGET
    own = getattr(config, "scope", None)  # lora_tune's own adapter
    if own is None:
        adapter = ctx.handoff.adapters.get(getattr(config, "prompt_from", None) or "")
        own = adapter.scope if adapter is not None else Scope.EVERY_SUITE
    return Scope(own)


@contextmanager
def general_view(model, scope):
    """The model as the general suite sees it: without a target-scoped adapter."""
    if scope != Scope.TARGET:
        yield model
    elif model.active_peft_config.is_prompt_learning:  # a soft prompt is an input: the weights under it are the model
        yield model.get_base_model()
    else:
        with model.disable_adapter():  # a target-scoped LoRA sits in the layers
            yield model


def write_validation_task(target, rows: list[tuple], folder: Path):
    """An lm-eval task scoring `rows` exactly as the target task scores its test rows: its YAML included, the
    data swapped for the validation rows."""
    import json

    import yaml

    from evaluation.harness import task_manager_for
    from evaluation.suites import Suite

    task = target.tasks[0]
    source = task_manager_for(target).task_index[task].yaml_path
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "validation.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in rows))
    name = f"{task}_selection"
    config = {
        "include": str(Path(source).resolve()),
        "task": name,
        "custom_dataset": None,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test",
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return Suite(name, "target", [name], str(folder))


def save_trainable(model, path: Path) -> None:
    """The trainable weights (the only ones training changes) to a safetensors file, atomically."""
    from safetensors.torch import save_file

    tensors = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # core.atomic's leftovers
    os.close(fd)
    try:
        save_file(tensors, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_trainable(model, path: Path) -> None:
    """Copy the kept weights back into the model's parameters, in place."""
    import torch
    from safetensors.torch import load_file

    saved = load_file(str(path))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in saved.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def deepspeed_stage(deepspeed) -> int | None:
    """The ZeRO stage of the stage's DeepSpeed config (a path or dict), or None without one."""
    if not deepspeed:
        return None
    import json

    raw = deepspeed if isinstance(deepspeed, dict) else json.loads(Path(deepspeed).read_text())
    return (raw.get("zero_optimization") or {}).get("stage")


def selector_for(config, ctx, model, tokenizer) -> Selector | None:
    """The stage's Selector, or None without `selection`; ZeRO-3 is refused (the weights are sharded)."""
    if getattr(config, "selection", None) is None:
        return None
    if ctx is not None and deepspeed_stage(ctx.deepspeed) == 3:
        raise UserError(
            f"{config.name}.selection: not available under ZeRO-3 (each rank holds a shard of the "
            f"weights); use ZeRO-2 or plain DDP"
        )
    return Selector(config, ctx, model, tokenizer)
