"""The orchestrator: orders stages, hands each stage's checkpoint to the next, skips finished stages.

It knows no training details: a stage is `STAGES[kind].run(config, ctx) -> StageResult`.
Launched as several processes (README: Scale out), every rank walks the same stages; rank 0 alone
decides what to skip, evaluates and writes (pipeline/ranks.py).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from data_recipes.catalog import EMBEDDED_PREFIX
from pipeline import ranks, results
from pipeline.atomic import write_json, write_text
from pipeline.config import EMBEDDED, RecipeFile, resolved_dict
from pipeline.manifest import Manifest
from pipeline.run_lock import RunLock
from pipeline.sweep import folder_name
from pipeline.threads import set_threads
from stages.context import StageContext, StageResult

log = logging.getLogger(__name__)
DONE = "DONE.json"  # completion marker, written last and atomically


def run_dir_for(recipe: RecipeFile, run_dir: str | None) -> Path:
    """The run folder: --run-dir if given, else runs_root/name."""
    return Path(run_dir) if run_dir else Path(recipe.runs_root) / recipe.name


def run_recipe(recipe: RecipeFile, run_dir: Path, recipe_path: Path, only: list[str] = ()) -> Path:
    """Run every recipe x seed of a recipe file into `run_dir`, then write results and report."""
    import yaml

    main = ranks.is_main()
    threads = set_threads(recipe.threads)
    # Other ranks never write into the run folder: their copy of the held-out task files (read only by
    # rank 0's evaluation) goes to a scratch folder.
    with RunLock(run_dir) if main else nullcontext(), tempfile.TemporaryDirectory(prefix="forgetless-") as scratch:
        if main:
            write_text(run_dir / "config.yaml", yaml.safe_dump(resolved_dict(recipe), sort_keys=False))
        manifest = (Manifest if main else ReadOnlyManifest).open(run_dir, recipe_path)
        with ranks.state().main_process_first():  # rank 0 builds / downloads, the others then read the cache
            base_dir = resolve_base_model(recipe, manifest)
            from stages.model_io import load_tokenizer

            tokenizer = load_tokenizer(base_dir, recipe.model.trust_remote_code)
            data_dir = run_dir / "data" if main else Path(scratch)
            sources, target = load_data(recipe, tokenizer, data_dir, manifest)
        shared = _shared_context(recipe, target)
        # Recorded for the reader; results need no correction for it: batch_size is global.
        manifest.data["launch"] = {"processes": ranks.world_size(), "deepspeed": shared["deepspeed"],
                                   "threads": threads}
        base_eval = run_stage(manifest, run_dir / "base" / "evaluate", "base/evaluate", "evaluate",
                              _eval_config(recipe), StageContext(stage_dir=run_dir / "base" / "evaluate",
                                                                 model_dir=base_dir, seed=0, **shared))
        rows = []
        for seed in recipe.seeds:
            for name, configs in recipe.stages.items():
                if only and name not in only:
                    continue
                rows += results.stage_rows(name, seed, "base", base_eval.rows)
                rows += run_one_recipe(manifest, run_dir, recipe, name, configs, seed, base_dir, sources, shared)
        if main:
            results.write_csv(run_dir / "results.csv", rows)
            from pipeline.report import write_report

            write_report(run_dir)
            manifest.finish()
        ranks.wait_for_everyone()  # no rank leaves (and no launcher reports success) before the report exists
    return run_dir


class ReadOnlyManifest(Manifest):
    """The manifest as ranks other than 0 hold it: updated in memory, never written."""

    def save(self) -> None:
        pass


def load_data(recipe: RecipeFile, tokenizer, data_dir: Path, manifest: Manifest):
    """Load every named source once (and the target task); record row counts and hashes."""
    from data_recipes.catalog import load_source
    from data_recipes.target import load_target

    sources, counts, prints, dropped = {}, {}, {}, {}
    target = None
    if recipe.target is not None:
        target = load_target(recipe.target, tokenizer, data_dir)
        sources["target"] = target.train
        counts.update(target.counts)
        prints.update(target.fingerprints)
        dropped.update(target.dropped)
    for name, config in recipe.data.items():
        sources[name], prints[config.source], lost = load_source(config, tokenizer)
        counts[name] = len(sources[name])
        if lost:
            dropped[config.source] = lost
    manifest.record_data(counts, prints, dropped, target.scoring if target else None)
    return sources, target


def stage_mix(config, seed: int, sources: dict):
    """The stage's training data: its sources in full, plus a k-fraction of its replay sources."""
    from data_recipes.mixes import Mix, Portion, build_mix

    portions = [Portion(tuple(config.data))]
    if config.replay:
        portions.append(Portion(tuple(config.replay), config.k))
    return build_mix(Mix(tuple(portions), seed), sources)


def run_one_recipe(manifest, run_dir, recipe, name, configs, seed, base_dir, sources, shared) -> list[dict]:
    """Train one recipe's stages in order, evaluating after each; returns its results rows."""
    rows, model_dir, adapter, adapters = [], base_dir, None, {}
    for config in configs:
        stage_id = f"seed{seed}/{folder_name(name)}/{config.name}"
        stage_dir = run_dir / stage_id
        mix = stage_mix(config, seed, sources)
        ctx = StageContext(stage_dir=stage_dir, model_dir=model_dir, seed=seed, adapters=dict(adapters),
                           train_data=mix.dataset, data_rows=mix.counts, data_notes=mix.notes, **shared)
        result = run_stage(manifest, stage_dir, stage_id, config.kind, config, ctx)
        model_dir, adapter = result.model_dir, result.adapter_dir or adapter
        if config.kind == "prompt_tune":
            adapters[config.name] = result.adapter_dir
        eval_dir = run_dir / f"{stage_id}-eval"
        eval_ctx = StageContext(stage_dir=eval_dir, model_dir=model_dir, seed=seed, adapter_dir=adapter, **shared)
        evaluated = run_stage(manifest, eval_dir, f"{stage_id}-eval", "evaluate", _eval_config(recipe), eval_ctx)
        rows += results.stage_rows(name, seed, config.name, evaluated.rows)
    return rows


def stage_key(kind: str, config, ctx: StageContext) -> str:
    """What makes a stage's output what it is; two stages with one key produce the same checkpoint."""
    import dataclasses
    import hashlib

    from pipeline.config import stage_dict

    settings = stage_dict(config) if kind != "evaluate" else dataclasses.asdict(config)
    settings.pop("name", None)
    identity = [kind, settings, str(ctx.model_dir), str(ctx.adapter_dir), sorted((k, str(v)) for k, v in ctx.adapters.items()),
                ctx.seed, ctx.data_rows, ctx.max_length]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def run_stage(manifest: Manifest, stage_dir: Path, stage_id: str, kind: str, config, ctx: StageContext) -> StageResult:
    """Run one stage unless it is done, here or as an identical stage of another recipe; record the hand-off.

    Rank 0 decides and every rank follows, so all take the same branch; ranks other than 0 write nothing.
    """
    from stages import STAGES

    run_dir = stage_dir.parents[len(Path(stage_id).parts) - 1]
    key = stage_key(kind, config, ctx)
    finished = ranks.from_main(lambda: _finished_result(manifest, stage_dir, stage_id, key, run_dir))
    if finished is not None:
        return finished
    log.info("run %s (%s)", stage_id, kind)
    main = ranks.is_main()
    if main:
        manifest.stage_started(stage_id, kind, ctx)
        stage_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if getattr(STAGES[kind], "MAIN_PROCESS_ONLY", False):
        result = ranks.from_main(lambda: STAGES[kind].run(config, ctx))
    else:  # a training stage: every rank trains its share of each batch
        result = STAGES[kind].run(config, ctx)
    seconds = round(time.perf_counter() - started, 2)
    if main:
        write_json(stage_dir / DONE, _result_json(result, seconds, run_dir))
        manifest.stage_finished(stage_id, result, seconds, key)
        shutil.rmtree(stage_dir / "trainer", ignore_errors=True)  # resume checkpoints: no longer needed
    ranks.wait_for_everyone()  # the next stage may load what rank 0 just saved
    return result


def _finished_result(manifest: Manifest, stage_dir: Path, stage_id: str, key: str, run_dir: Path) -> StageResult | None:
    """The stage's result if it needs no run: done here, or done as an identical stage (recorded as reused)."""
    marker = stage_dir / DONE
    if marker.exists():
        log.info("skip %s (done)", stage_id)
        return _load_result(marker, run_dir)
    twin = manifest.done_stage_with_key(key)
    if twin and (run_dir / twin / DONE).exists():
        # e.g. DMT's domain stage is the same in domain_only, mixed_sequential and every k of dmt.
        log.info("reuse %s for %s (identical inputs)", twin, stage_id)
        manifest.stage_reused(stage_id, twin, key)
        return _load_result(run_dir / twin / DONE, run_dir)
    return None


def resolve_base_model(recipe: RecipeFile, manifest: Manifest) -> Path:
    """The base checkpoint folder; the embedded default is built once and cached."""
    if recipe.model.path != EMBEDDED:
        return Path(recipe.model.path) if Path(recipe.model.path).exists() else recipe.model.path
    from embedded.model import ensure_base_model

    base = ensure_base_model()
    manifest.record_base(base)
    return base


def _shared_context(recipe: RecipeFile, target) -> dict:
    from evaluation.suites import SUITES, hub_suite
    from pipeline.deepspeed_config import deepspeed_path

    ev = recipe.evaluation
    general = hub_suite(ev.general_tasks, "general") if ev.general_tasks else SUITES[ev.general_suite]
    # (suite, attach the soft prompt?): only the target task ever sees the prompt.
    suites = [(general, False), *[(SUITES[name], False) for name in ev.domain_suites]]
    if target is not None:
        suites.append((target.suite, True))
    extra = {"suites": suites, "labels": target.labels if target else []}
    return {"max_length": recipe.max_length, "trust_remote_code": recipe.model.trust_remote_code, "extra": extra,
            "deepspeed": deepspeed_path(recipe)}


def _eval_config(recipe: RecipeFile):
    from stages.evaluate import Config

    target_limit = recipe.evaluation.target_limit
    if recipe.target is not None and recipe.target.train.startswith(EMBEDDED_PREFIX):
        # An embedded target's test split is generated at a fixed size: test_rows takes the first rows of it.
        target_limit = min(target_limit or recipe.target.test_rows, recipe.target.test_rows)
    return Config(limit=recipe.evaluation.limit, target_limit=target_limit, batch_size=recipe.evaluation.batch_size)


def _result_json(result: StageResult, seconds: float, run_dir: Path) -> dict:
    # Paths inside the run folder are stored relative to it, so a run folder can be moved or copied.
    def rel(path):
        if path is None:
            return None
        path = Path(path)
        return str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)

    return {"model_dir": rel(result.model_dir), "adapter_dir": rel(result.adapter_dir),
            "metrics": result.metrics, "rows": result.rows, "seconds": seconds}


def _load_result(marker: Path, run_dir: Path) -> StageResult:
    data = json.loads(marker.read_text())
    adapter = data["adapter_dir"]
    return StageResult(model_dir=run_dir / data["model_dir"], metrics=data["metrics"], rows=data["rows"],
                       adapter_dir=run_dir / adapter if adapter else None)
