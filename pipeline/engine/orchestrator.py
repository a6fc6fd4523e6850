"""The orchestrator: orders stages, hands each stage's checkpoint to the next, skips finished stages.

It knows no training details: a stage is `STAGES[kind].run(config, ctx) -> StageResult`.
Launched as several processes (README: Scale out), every rank walks the same stages; rank 0 alone
decides what to skip, evaluates and writes (core/ranks.py).
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from core import ranks
from core.atomic import remove_leftovers, write_text
from core.errors import UserError, every_rank
from core.machine import cpu_kernels
from data_recipes.catalog import EMBEDDED_PREFIX
from pipeline.engine import markers, results_csv
from pipeline.engine.manifest import Manifest
from pipeline.engine.markers import DONE  # the completion marker, written last and atomically
from pipeline.engine.run_lock import RunLock
from pipeline.engine.threads import set_threads
from pipeline.recipe.config import RecipeFile, all_targets, resolved_dict
from stages.context import StageContext, StageResult
from stages.handoff import Handoff

log = logging.getLogger(__name__)


def run_dir_for(recipe: RecipeFile, run_dir: str | None) -> Path:
    """The run folder: --run-dir if given, else runs_root/name."""
    return Path(run_dir) if run_dir else Path(recipe.runs_root) / recipe.name


def with_swept_copies(only: list[str], recipe: RecipeFile) -> list[str]:
    """--only NAME of a recipe the sweep replaced means every copy it made of it (promot_merge@alpha=0.3, ...); any
    other name stays as it is (an unknown one is refused by the caller)."""
    from pipeline.recipe.sweep import is_copy

    selected = []
    for name in only:
        copies = [] if name in recipe.stages else [c for c, values in recipe.swept.items() if is_copy(c, name, values)]
        selected += copies or [name]
    return selected


def run_recipe(
    recipe: RecipeFile,
    run_dir: Path,
    recipe_path: Path,
    only: list[str] = (),
    rerun_changed: bool = False,
    report: Callable[[Path], object] | None = None,
) -> Path:
    """Run every recipe x seed of a recipe file into `run_dir`, then write results.csv and call `report(run_dir)`
    (rank 0, under the run lock, before the manifest records the run finished; pipeline/run.py passes the report).

    Everything is loaded and planned first; the run folder is written to only once the plan agrees with
    what the folder already holds (pipeline/engine/plan.py), so a failure before that leaves it as it was.
    """
    only = _selected_recipes(only, recipe)
    main = ranks.is_main()
    threads = set_threads(recipe.threads)
    # Other ranks never write into the run folder: their copy of the held-out task files (read only by
    # rank 0's evaluation) goes to a scratch folder.
    with RunLock(run_dir) if main else nullcontext(), tempfile.TemporaryDirectory(prefix="forgetless-") as scratch:
        manifest = _open_manifest(run_dir, recipe_path, main)
        plan, base_dir, chat, targets = make_plan(recipe, manifest, Path(scratch))
        _check_then_commit(recipe, plan, only, run_dir, manifest, rerun_changed, targets)
        for target in targets:
            target.write_suite(run_dir / "data" if main else Path(scratch))
        shared = _shared_context(recipe, targets, run_dir, chat)
        _record_launch(manifest, shared, threads, chat)
        base_eval, base_values = _evaluate_base(manifest, run_dir, plan[0], base_dir, shared)
        rows = _run_every_recipe(recipe, plan, only, manifest, run_dir, base_dir, shared, base_eval.rows, base_values)
        if main:
            _finish(recipe, run_dir, rows, manifest, report)
        ranks.wait_for_everyone()  # no rank leaves (and no launcher reports success) before the report exists
    return run_dir


def _selected_recipes(only: list[str], recipe: RecipeFile) -> list[str]:
    """--only's recipes, a swept one as its copies; an unknown name is every rank's one-line error."""
    only = with_swept_copies(only, recipe)
    unknown = [name for name in only if name not in recipe.stages]
    if unknown:
        raise every_rank(
            UserError(
                f"--only: no recipe named {', '.join(map(repr, unknown))} in this file; "
                f"its recipes: {', '.join(recipe.stages)}"
            )
        )
    return only


def _open_manifest(run_dir: Path, recipe_path: Path, main: bool) -> Manifest:
    """The run's manifest, held in memory (not written yet); rank 0 first clears dead writers' temp files."""
    if main:  # under the run lock: no writer of ours is alive to own a temp file here
        remove_leftovers(run_dir)
    return (Manifest if main else ReadOnlyManifest).open(run_dir, recipe_path)


def _check_then_commit(
    recipe: RecipeFile,
    plan: list,
    only: list[str],
    run_dir: Path,
    manifest: Manifest,
    rerun_changed: bool,
    targets: list,
) -> None:
    """Rank 0 checks the plan against the folder (every rank gets its refusal); then, on rank 0 only, the folder
    changes for the first time: cleared stages dropped, markers repaired, config.yaml and the manifest written."""
    import yaml

    selected = [s for s in plan if s.recipe is None or not only or s.recipe in only]
    suites = _suites(recipe, targets)
    unsafe_code = recipe.evaluation.unsafe_code_execution
    outcome = ranks.from_main(lambda: _checked(selected, run_dir, manifest, rerun_changed, suites, unsafe_code))
    if isinstance(outcome, str):
        raise every_rank(UserError(outcome))
    if ranks.is_main():  # the plan holds: from here on the folder changes
        for stage_id in outcome:
            manifest.data["stages"].pop(stage_id, None)
        markers.repair(manifest, run_dir, [stage.stage_id for stage in plan])  # a kill between marker and manifest
        write_text(run_dir / "config.yaml", yaml.safe_dump(resolved_dict(recipe), sort_keys=False))
        manifest.commit()


def _record_launch(manifest: Manifest, shared: dict, threads: int, chat: bool) -> None:
    """Recorded for the reader; results need no correction for it: batch_size is global."""
    manifest.data["launch"] = {
        "processes": ranks.world_size(),
        "deepspeed": shared["deepspeed"],
        "threads": threads,
        "cpu": cpu_kernels(),
    }
    manifest.data["chat_template"] = CHAT_CONVENTION if chat else {"applied": False}


def _evaluate_base(manifest: Manifest, run_dir: Path, stage, base_dir: Path, shared: dict):
    """The base model's evaluation (plan[0]) and its per-example values (None from a run older than the file)."""
    from stages.evaluate import read_per_example

    base_eval = run_stage(
        manifest,
        run_dir,
        stage,
        StageContext(stage_dir=run_dir / "base" / "evaluate", handoff=Handoff(base_dir, base_dir), seed=0, **shared),
    )
    return base_eval, read_per_example(run_dir / stage.stage_id)


def _run_every_recipe(
    recipe: RecipeFile,
    plan: list,
    only: list[str],
    manifest: Manifest,
    run_dir: Path,
    base_dir: Path,
    shared: dict,
    base_rows: list,
    base_values,
) -> list[dict]:
    """Every seed x recipe in order: run it, or (not in --only) read back its finished rows. Returns all rows."""
    rows = []
    for seed in recipe.seeds:
        for name in recipe.stages:
            stages = [s for s in plan if s.recipe == name and s.seed == seed]
            if only and name not in only:
                rows += _finished_rows(run_dir, name, seed, stages, manifest, base_rows)
                continue
            rows += results_csv.stage_rows(name, seed, "base", base_rows)
            rows += run_one_recipe(manifest, run_dir, name, stages, base_dir, shared, base_rows, base_values)
    return rows


def _finish(
    recipe: RecipeFile, run_dir: Path, rows: list[dict], manifest: Manifest, report: Callable[[Path], object] | None
) -> None:
    """Rank 0: results.csv, the report, then the manifest's record that the run finished."""
    results_csv.write_csv(run_dir / "results.csv", rows, recipe.swept)
    if report is not None:
        report(run_dir)
    manifest.finish()


def make_plan(recipe: RecipeFile, manifest: Manifest, scratch: Path):
    """Load the base's tokenizer and the data, and plan every stage with its key (pipeline/engine/plan.py); writes nothing
    but the target's task files into `scratch`. Returns (plan, base folder, chat template on?, targets)."""
    from pipeline.engine.deepspeed_config import deepspeed_path
    from pipeline.engine.plan import plan_run

    with ranks.state().main_process_first():  # rank 0 builds / downloads, the others then read the cache
        base_dir = resolve_base_model(recipe, manifest)
        from stages.model_io import load_tokenizer

        tokenizer = load_tokenizer(base_dir, recipe.model.trust_remote_code)
        chat = chat_template_on(recipe, tokenizer)
        sources, targets, fingerprints = load_data(recipe, tokenizer, manifest)
    for target in targets:
        target.write_suite(scratch / "plan")  # the plan keys the target's task files as written
    scoring = (
        {t.config.name: t.scoring for t in targets if t.scoring}
        if recipe.targets
        else (targets[0].scoring if targets else {})
    )
    plan = plan_run(
        recipe,
        base_dir,
        fingerprints,
        sources,
        _eval_config(recipe, chat),
        _suites(recipe, targets),
        target_labels(targets),
        tokenizer=tokenizer,
        scoring=scoring,
        deepspeed=deepspeed_path(recipe),
    )
    return plan, base_dir, chat, targets


def _checked(plan, run_dir: Path, manifest: Manifest, rerun_changed: bool, suites: list, unsafe_code: bool):
    """On rank 0, before the folder changes: every suite's tasks load, code suites have a sandbox, and check_plan
    holds. Returns the stage ids check_plan cleared, or the refusal's message (handed to every rank)."""
    from evaluation.harness import TaskLoadError, task_manager_for
    from pipeline.engine.plan import check_plan

    try:
        for suite, _ in suites:  # an unknown task name would otherwise fail at the first evaluation
            task_manager_for(suite)
        _choose_code_isolation(suites, unsafe_code, manifest)
        return check_plan(plan, run_dir, manifest.data["stages"], rerun_changed)
    except TaskLoadError as err:
        return f"evaluation: {err}"
    except UserError as err:
        return str(err)


def _choose_code_isolation(suites: list, unsafe_code: bool, manifest: Manifest) -> None:
    """Where a suite runs model-written code: pick the sandbox (or refuse, naming the package), and record it."""
    from evaluation import sandbox
    from evaluation.suites import runs_generated_code

    if not any(runs_generated_code(suite) for suite, _ in suites):
        manifest.data.pop("code_isolation", None)
        return
    sandbox.allow_unisolated(unsafe_code)
    try:
        isolation = sandbox.chosen()
    except sandbox.SandboxUnavailable as err:
        raise UserError(f"evaluation.unsafe_code_execution: {err}") from None
    manifest.data["code_isolation"] = isolation.mode.value


def _finished_rows(run_dir: Path, name: str, seed: int, stages: list, manifest: Manifest, base_rows) -> list[dict]:
    """Results of a recipe not run now (--only): its finished evaluations whose inputs still match, in order."""
    rows, stale = [], []
    for stage in stages:
        if stage.reports is None:
            continue
        marker = markers.marker_of(run_dir, stage.stage_id, manifest.data["stages"])
        if marker is None:
            continue
        done = markers.read(marker)
        if done.get("key") != stage.key:
            stale.append(stage.stage_id)
            continue
        rows += results_csv.stage_rows(name, seed, stage.reports, done["rows"])
    if stale:
        log.warning("not reported (finished with other inputs than this config): %s", ", ".join(stale))
    return results_csv.stage_rows(name, seed, "base", base_rows) + rows if rows else []


class ReadOnlyManifest(Manifest):
    """The manifest as ranks other than 0 hold it: updated in memory, never written."""

    def save(self) -> None:
        pass


def load_data(recipe: RecipeFile, tokenizer, manifest: Manifest):
    """Load every named source once (and the target task); record row counts and hashes (nothing is written).

    Returns the sources by name, the targets, and each source's content hash by name ("target" for the target's
    training data, "target_test" for its test data), for the plan's stage keys. With several targets
    (`targets:`), each target's rows are a source of its own name, tagged with it, and "target" is all of them.
    """
    from data_recipes.catalog import load_source
    from data_recipes.target import load_target, tagged_targets

    sources, counts, prints, dropped, by_name = {}, {}, {}, {}, {}
    configs = all_targets(recipe)
    targets = [load_target(config, tokenizer) for config in configs]
    several = bool(recipe.targets)  # row counts named per target, since each has train/test counts of its own
    for config, target in zip(configs, targets):
        counts.update({f"{config.name}.{k}" if several else k: n for k, n in target.counts.items()})
        prints.update(target.fingerprints)
        dropped.update(target.dropped)
    if recipe.targets:
        sources.update(tagged_targets(targets))
        by_name.update({t.config.name: t.fingerprints[t.config.train] for t in targets})
        by_name["target"] = [by_name[t.config.name] for t in targets]
        by_name["target_test"] = {t.config.name: t.test_fingerprint for t in targets}
    elif targets:
        [target] = targets
        sources["target"] = target.train
        by_name["target"] = target.fingerprints[recipe.target.train]
        by_name["target_test"] = target.test_fingerprint
    for name, config in recipe.data.items():
        sources[name], prints[config.source], lost = load_source(config, tokenizer)
        by_name[name] = prints[config.source]
        counts[name] = len(sources[name])
        if lost:
            dropped[config.source] = lost
    scoring = (
        {t.config.name: t.scoring for t in targets if t.scoring}
        if recipe.targets
        else (targets[0].scoring if targets else None)
    )
    manifest.record_data(counts, prints, dropped, scoring)
    return sources, targets, by_name


def target_labels(targets: list) -> list[str]:
    """Every target's answer labels, in order, once each: what a general answer leaks when it is one of them."""
    return list(dict.fromkeys(label for target in targets for label in target.labels))


def run_one_recipe(
    manifest, run_dir, name, stages: list, base_dir, shared, base_rows=(), base_values=None
) -> list[dict]:
    """Run one recipe's planned stages in order, each handed what the one before made; returns its results rows."""
    rows, handoff = [], Handoff(model_dir=base_dir, base_dir=base_dir)
    for stage in stages:
        ctx = StageContext(stage_dir=run_dir / stage.stage_id, handoff=handoff, seed=stage.seed, **shared)
        ctx.extra = {
            **ctx.extra,
            "base_rows": list(base_rows),  # evaluation reuses them where weights are the base's
            "base_per_example": base_values,
        }  # and pairs its scores with them (paired_stderr)
        if stage.mix is not None:
            ctx.train_data, ctx.data_rows, ctx.data_notes = stage.mix.dataset, stage.mix.counts, stage.mix.notes
        result = run_stage(manifest, run_dir, stage, ctx)
        handoff = handoff.after(result, stage.config.name if stage.reports is None else None)  # evaluations: no model
        if stage.reports is not None:
            rows += results_csv.stage_rows(name, stage.seed, stage.reports, result.rows)
    return rows


def run_stage(manifest: Manifest, run_dir: Path, stage, ctx: StageContext) -> StageResult:
    """Run one planned stage unless it is done, here or as an identical stage of another recipe; record the hand-off.

    Rank 0 decides and every rank follows, so all take the same branch; ranks other than 0 write nothing.
    The plan was checked against the folder first: a marker here is for these very inputs.
    """
    from stages import STAGES

    stage_dir, stage_id, kind = run_dir / stage.stage_id, stage.stage_id, stage.kind
    finished = ranks.from_main(lambda: _finished_result(manifest, run_dir, stage))
    if finished is not None:
        return finished
    log.info("run %s (%s)", stage_id, kind)
    if ctx.tracking is not None:
        ctx.tracking = ctx.tracking.for_stage(stage_id)
    main = ranks.is_main()
    if main:
        manifest.stage_started(stage_id, kind, ctx)
        stage_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    from stages.preemption import Preempted

    try:
        if getattr(STAGES[kind], "MAIN_PROCESS_ONLY", False):
            result = ranks.from_main(lambda: STAGES[kind].run(stage.config, ctx))
        else:  # a training stage: every rank trains its share of each batch
            result = STAGES[kind].run(stage.config, ctx)
    except Preempted as stop:
        if main:
            manifest.stage_stopped(stage_id, stop.signal)
        raise
    seconds = round(time.perf_counter() - started, 2)
    if main:  # artifacts, marker, manifest, cleanup: pipeline/engine/markers.py
        markers.commit(manifest, run_dir, stage, result, seconds)
    ranks.wait_for_everyone()  # the next stage may load what rank 0 just saved
    return result


def _finished_result(manifest: Manifest, run_dir: Path, stage) -> StageResult | None:
    """The stage's result if it needs no run: done here, or done as an identical stage (recorded as reused)."""
    stage_dir, stage_id, key = run_dir / stage.stage_id, stage.stage_id, stage.key
    marker = stage_dir / DONE
    if marker.exists():
        log.info("skip %s (done)", stage_id)  # its manifest entry agrees: repaired from the marker at the start
        return markers.result_of(marker, run_dir, stage)
    twin = manifest.done_stage_with_key(key)
    if twin and (run_dir / twin / DONE).exists() and markers.read(run_dir / twin / DONE).get("key") == key:
        # e.g. DMT's domain stage is the same in domain_only, mixed_sequential and every k of dmt.
        log.info("reuse %s for %s (identical inputs)", twin, stage_id)
        manifest.stage_reused(stage_id, twin, key)
        return markers.result_of(run_dir / twin / DONE, run_dir, stage)
    return None


def resolve_base_model(recipe: RecipeFile, manifest: Manifest) -> Path:
    """The base checkpoint folder; a named base (the embedded default, SmolLM2) is built once and cached."""
    import bases
    from bases.identity import resolve_hub_base

    if not bases.is_named(recipe.model.path):
        # A local folder by its absolute path: stages hand it on, and a rerun reads it back, from any folder.
        if Path(recipe.model.path).exists():
            if recipe.model.revision is not None:
                raise every_rank(
                    UserError(
                        f"model.revision: {recipe.model.revision!r} is for a hub id; "
                        f"{recipe.model.path} is a local folder"
                    )
                )
            return Path(recipe.model.path).resolve()
        return resolve_hub_base(recipe.model, manifest)  # a snapshot folder at model.revision, keyed by content
    if recipe.model.revision is not None:
        raise every_rank(
            UserError(
                f"model.revision: {recipe.model.revision!r} is for a hub id; "
                f"{recipe.model.path!r} is a base forgetless builds"
            )
        )
    base = bases.ensure(recipe.model.path)
    manifest.record_base(base, recipe.model.path)
    return base


def _suites(recipe: RecipeFile, targets: list) -> list:
    """(suite, attach the soft prompt?) for every suite evaluated: only the target task ever sees the prompt."""
    from evaluation.suites import SUITES, Suite, hub_suite

    ev = recipe.evaluation
    if ev.general_tasks and ev.task_dir:  # the user's own task YAMLs, indexed alone (lm-eval's built-ins are not)
        general = Suite("local:" + ",".join(ev.general_tasks), "general", list(ev.general_tasks), str(ev.task_dir))
    else:
        general = hub_suite(ev.general_tasks, "general") if ev.general_tasks else SUITES[ev.general_suite]
    suites = [(general, False), *[(SUITES[name], False) for name in ev.domain_suites]]
    suites += [(target.suite, True) for target in targets]
    return suites


def _shared_context(recipe: RecipeFile, targets: list, run_dir: Path, chat: bool = False) -> dict:
    from pipeline.engine.deepspeed_config import deepspeed_path
    from stages.tracking import tracking_for

    ev = recipe.evaluation  # the final evaluation's settings, for a stage that also scores while it trains
    extra = {
        "suites": _suites(recipe, targets),
        "labels": target_labels(targets),
        # With several targets: each target suite's task (its prompt is the one that serves it), by suite name.
        "target_of_suite": {t.suite.name: t.config.name for t in targets} if recipe.targets else {},
        "target_names": [t.config.name for t in targets] if recipe.targets else [],
        "evaluation": {"limit": ev.limit, "batch_size": ev.batch_size, "chat_template": chat},
    }
    tracking = tracking_for(recipe.report_to, run_dir, recipe.name) if ranks.is_main() else None
    return {
        "max_length": recipe.max_length,
        "trust_remote_code": recipe.model.trust_remote_code,
        "extra": extra,
        "deepspeed": deepspeed_path(recipe),
        "tracking": tracking,
    }


# How a chat model is prompted, recorded in the manifest (README: "Chat models").
CHAT_CONVENTION = {
    "applied": True,
    "suites": "lm-eval's apply_chat_template: each request's text is one user turn, rendered by the tokenizer's "
    "chat template with add_generation_prompt; a multiple-choice continuation follows with no delimiter",
    "target_and_training_data": "chat-format rows (messages, sharegpt, alpaca, gsm8k) rendered once by the same "
    "tokenizer.apply_chat_template(add_generation_prompt=True) when loaded; "
    "prompt_completion rows used as written; the target is scored with no second template",
}


def chat_template_on(recipe: RecipeFile, tokenizer) -> bool:
    """evaluation.chat_template resolved against the tokenizer. Off, the tokenizer forgets its template for the
    run's data too, so chat-format rows are rendered as plain "User: ... Assistant:" turns, as the suites are."""
    setting = recipe.evaluation.chat_template
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if setting is True and not has_template:
        raise every_rank(
            UserError(f"evaluation.chat_template: true, but the tokenizer of {recipe.model.path} has no chat template")
        )
    on = has_template if setting == "auto" else bool(setting)
    if not on:
        tokenizer.chat_template = None
    return on


def _eval_config(recipe: RecipeFile, chat: bool = False):
    from stages.evaluate import Config

    target_limit = recipe.evaluation.target_limit
    embedded = [t for t in all_targets(recipe) if t.train.startswith(EMBEDDED_PREFIX)]
    if embedded:
        # An embedded target's test split is generated at a fixed size: test_rows takes the first rows of it.
        rows = min(t.test_rows for t in embedded)
        target_limit = min(target_limit or rows, rows)
    return Config(
        limit=recipe.evaluation.limit,
        target_limit=target_limit,
        batch_size=recipe.evaluation.batch_size,
        chat_template=chat,
    )
