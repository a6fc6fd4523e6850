"""Run an evaluation suite through lm-evaluation-harness on an in-memory model, soft prompt or not.

ProMoT inference: pass the PEFT model (soft prompt attached) for the fine-tuned target task only;
for every other suite pass `peft_model.get_base_model()` or evaluate inside `disable_adapter()`.
"""

from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import resolve_max_length
from lm_eval.models.utils_hf import stop_sequences_criteria
from lm_eval.tasks import TaskManager
from lm_eval.tasks._yaml_loader import load_yaml

from evaluation.generation import generate_tokens, prepends_embeddings, soft_prompt_length
from evaluation.suites import Suite


class TaskLoadError(ValueError):
    """A suite names a task lm-eval cannot find, or a task YAML in its folder does not load."""


@dataclass
class TaskResult:
    """One task's score, with the model's filtered answer per sample (for the format-leak measure)."""

    task: str
    suite_kind: str
    metric: str  # lm-eval metric name, e.g. "exact_match"
    score: float  # as lm-eval reports it: in [0, 1] for exact_match and accuracy
    n: int
    responses: list[str] = field(repr=False)
    filter: str = "none"  # the lm-eval filter the score and responses come from
    references: list[str] = field(default_factory=list, repr=False)  # the task's answers, per sample
    stderr: float | None = None  # standard error of the mean over the n samples (None: not a per-sample mean)
    # The task's other metrics of the same filter (IFEval's loose accuracy, acc_norm): name -> (score, stderr).
    extra: dict = field(default_factory=dict, repr=False)
    generated: bool = True  # the responses are generations; False for a scored choice (multiple choice)
    # The primary metric's value per sample, by lm-eval doc_id: a stage and the base are scored on the same docs, so
    # their difference has a paired standard error (stages/evaluate.py). None where a value is no number (IFEval).
    per_example: dict[int, float] | None = field(default=None, repr=False)


class SoftPromptHFLM(HFLM):
    """HFLM whose generation decodes a soft prompt correctly (evaluation.generation says why PEFT's does not).

    Log-likelihood scoring needs no fix: it right-pads, runs no cache, and lm-eval already drops the
    extra virtual-token logits (tests/evaluation/test_soft_prompt_scoring.py checks both against a
    by-hand computation).
    """

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        """Greedy/sampled continuation of `context`; returns context + new tokens like HFLM."""
        if not prepends_embeddings(self.model):
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        # Same decoding defaults as HFLM._model_generate: temperature 0 means greedy.
        generation_kwargs["temperature"] = generation_kwargs.get("temperature", 0.0)
        if generation_kwargs["temperature"] == 0.0 and generation_kwargs.get("do_sample") is None:
            generation_kwargs["do_sample"] = False
        if generation_kwargs.get("do_sample") is False and generation_kwargs["temperature"] == 0.0:
            generation_kwargs.pop("temperature")
        attention_mask = generation_kwargs.pop("attention_mask")
        new_tokens = generate_tokens(
            self.model,
            context,
            attention_mask,
            max_new_tokens=max_length - context.shape[1],
            # Only new tokens come back: the stop criteria look from position 0.
            stopping_criteria=stop_sequences_criteria(self.tokenizer, stop, 0, context.shape[0]),
            pad_token_id=self.tokenizer.pad_token_id,
            use_cache=True,
            **generation_kwargs,
        )
        return torch.cat([context, new_tokens], dim=1)  # HFLM slices the context off again


def make_lm(model, tokenizer, *, batch_size: int = 32, max_length: int | None = None) -> SoftPromptHFLM:
    """Wrap an in-memory model (plain or PEFT) for lm-eval; max_length is the model's whole window."""
    window = max_length or resolve_max_length(model.config, tokenizer)
    # Virtual tokens occupy positions too: inputs must fit in what the window leaves them.
    return SoftPromptHFLM(
        pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=window - soft_prompt_length(model)
    )


def task_manager_for(suite: Suite) -> TaskManager:
    """Index the suite's tasks, raising (never skipping) on a broken YAML or an unknown task name."""
    if suite.include_path is None:
        manager, where = TaskManager(), "lm-eval's built-in tasks"
    else:
        folder = Path(suite.include_path)
        _check_task_yamls(folder)
        # Built-in tasks are not indexed for local suites: that walk takes seconds and is not needed.
        manager, where = TaskManager(include_path=str(folder), include_defaults=False), str(folder)
    missing = [t for t in suite.tasks if t not in manager.all_tasks]
    if missing:
        raise TaskLoadError(f"suite {suite.name!r}: task(s) {missing} not found in {where}")
    return manager


def _check_task_yamls(folder: Path) -> None:
    """Load every task YAML under folder; lm-eval's index would skip a broken one silently."""
    if not folder.is_dir():
        raise TaskLoadError(f"{folder}: task folder does not exist")
    for path in sorted(folder.glob("**/*.yaml")):
        try:
            config = load_yaml(path, resolve_func=True)  # also imports `!function` references
        except Exception as err:  # any parse/import failure is a user error in that file
            raise TaskLoadError(f"{path}: {type(err).__name__}: {err}") from err
        if "task" not in config and "group" not in config:
            raise TaskLoadError(f"{path}: has neither a 'task' nor a 'group' key")


def evaluate_suite(
    model,
    tokenizer,
    suite: Suite,
    *,
    limit: int | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    apply_chat_template: bool = False,
    samples: dict[str, list[int]] | None = None,
) -> list[TaskResult]:
    """Evaluate a model (optionally with an attached prompt-tuning adapter) on every task of a suite.

    apply_chat_template: lm-eval's own switch. Each request's text is one user turn rendered by the tokenizer's
    chat template with the generation prompt, and a multiple-choice continuation follows it with no delimiter.
    samples: lm-eval's own: which docs of each task to score (instead of the first `limit`).
    """
    manager = task_manager_for(suite)
    if any("ifeval" in task for task in suite.tasks):
        # Before lm-eval's IFEval code is imported: importing it puts nltk's punkt_tab from the shipped copy on
        # nltk's path (once per process), so there is no download attempt.
        import evaluation.tasks.real.ifeval_scoring  # noqa: F401
    was_training = model.training
    try:
        with _quiet_lm_eval(), _preserved_rng(), _no_environment_survey():
            lm = make_lm(model, tokenizer, batch_size=batch_size, max_length=max_length)
            output = simple_evaluate(
                model=lm,
                tasks=list(suite.tasks),
                task_manager=manager,
                limit=limit,
                samples=samples,
                log_samples=True,
                bootstrap_iters=0,
                apply_chat_template=apply_chat_template,
            )
    finally:
        model.train(was_training)  # HFLM switched it to eval mode; a training stage may go on
    return [_task_result(task, suite, output) for task in suite.tasks]


def _task_result(task: str, suite: Suite, output: dict) -> TaskResult:
    """Pick the task's first reported metric/filter and collect that filter's per-sample answers."""
    scores = output["results"][task]
    keys = [k for k in scores if "," in k and "_stderr" not in k]  # "metric,filter", in config order
    metric, filter_name = keys[0].split(",", 1)
    samples = sorted((s for s in output["samples"][task] if s["filter"] == filter_name), key=lambda s: s["doc_id"])
    extra = {}
    for key in keys[1:]:
        other, other_filter = key.split(",", 1)
        if other_filter == filter_name and isinstance(scores[key], (int, float)):
            extra[other] = (float(scores[key]), standard_error(samples, other))
    return TaskResult(
        task=task,
        suite_kind=suite.suite_kind,
        metric=metric,
        score=float(scores[keys[0]]),
        n=len(samples),
        responses=[_response_text(s) for s in samples],
        filter=filter_name,
        references=[str(s.get("target", "")) for s in samples],
        stderr=standard_error(samples, metric),
        extra=extra,
        generated=all(_is_generation(s) for s in samples),
        per_example=per_example(samples, metric),
    )


def per_example(samples: list[dict], metric: str) -> dict[int, float] | None:
    """The metric's value per sample by doc_id; None when a value is no number (as standard_error refuses it)."""
    values = {int(s["doc_id"]): s.get(metric) for s in samples}
    if not values or not all(isinstance(v, (bool, int, float)) for v in values.values()):
        return None
    return {doc: float(v) for doc, v in values.items()}


def standard_error(samples: list[dict], metric: str) -> float | None:
    """The standard error of a mean metric from its per-sample values: sd (ddof 1) / sqrt(n), as lm-eval's
    mean_stderr computes it. None when a sample's value is no number (IFEval's instruction-level lists are
    aggregated otherwise) or n < 2."""
    values = [s.get(metric) for s in samples]
    if len(values) < 2 or not all(isinstance(v, (bool, int, float)) for v in values):
        return None
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values)))


def _is_generation(sample: dict) -> bool:
    responses = sample["filtered_resps"]
    return len(responses) == 1 and isinstance(responses[0], str)


def _response_text(sample: dict) -> str:
    """The model's answer as text: the generation, or the most likely choice for scored tasks."""
    responses = sample["filtered_resps"]
    if len(responses) == 1 and isinstance(responses[0], str):
        return responses[0]
    if all(isinstance(r, (tuple, list)) for r in responses):  # multiple choice: (loglik, is_greedy)
        best = max(range(len(responses)), key=lambda i: responses[i][0])
        return str(sample["arguments"][best][1])
    return str(responses[0])


@contextlib.contextmanager
def _no_environment_survey():
    """Skip what lm-eval surveys at the end of every run for results fields nothing here reads: torch's
    collect_env (pip, conda and nvidia-smi subprocesses, about 0.4 s per suite) and `git describe` in the
    working folder, which prints "fatal: not a git repository" outside one (the manifest has the code version)."""
    import lm_eval.evaluator as evaluator

    stand_ins = {
        "add_env_info": lambda storage: storage.update(pretty_env_info="not collected (forgetless)"),
        "get_git_commit_hash": lambda: None,
    }
    originals = {name: getattr(evaluator, name) for name in stand_ins if hasattr(evaluator, name)}
    for name in originals:  # another lm-eval layout may lack one: nothing to skip there
        setattr(evaluator, name, stand_ins[name])
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(evaluator, name, original)


@contextlib.contextmanager
def _preserved_rng():
    """Let lm-eval seed its run without changing the random state of a training run around it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng():
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


# Warnings lm-eval prints for exactly the use intended here (in-memory model, custom_dataset tasks).
_EXPECTED_WARNINGS = (
    "`pretrained` model kwarg is not of type `str`",
    "Passed an already-initialized model",
    "Custom kwargs can be passed",
)
_NOISY_LOGGERS = ("lm_eval.models.huggingface", "lm_eval.api.task")


class _DropExpectedWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in _EXPECTED_WARNINGS)


@contextlib.contextmanager
def _quiet_lm_eval():
    """Lower lm-eval's logging to warnings (minus the expected ones) for the run; tqdm bars stay."""
    logger, drop = logging.getLogger("lm_eval"), _DropExpectedWarnings()
    level = logger.level
    logger.setLevel(logging.WARNING)
    for name in _NOISY_LOGGERS:  # a filter only sees records logged on its own logger
        logging.getLogger(name).addFilter(drop)
    try:
        yield
    finally:
        logger.setLevel(level)
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).removeFilter(drop)
