"""The data fingerprint of a retraining: what goes in, by content, so unchanged inputs train nothing.

It covers every data source (the target and the named `data:` sources: a local file's sha256, the
generated rows of an `embedded:` source, a hub id by name) and the resolved config of the gated
recipe, so editing its stages, seeds, data caps or evaluation retrains too. It leaves out what does
not change the model: `runs_root`, the gate thresholds and the report's `checks:` and `report:` (new
thresholds re-judge the same run instead of training it again), the swept values (already in the stages), the
trackers (`report_to`) and whether code may run unisolated
(`evaluation.unsafe_code_execution`). The base model counts by its `model.path` (a folder or hub id): point
it at a new folder to retrain on a new base.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.recipe.config import RecipeFile, resolved_dict


def fingerprint(recipe: RecipeFile, gated_recipe: str) -> dict:
    """{fingerprint, sources, config_sha256}: one digest over every source's content hash and the config."""
    sources = {source: source_hash(source, split, rows) for source, split, rows in data_sources(recipe)}
    config = resolved_dict(recipe)
    for key in ("runs_root", "gate", "report_to", "checks", "report", "swept"):
        config.pop(key, None)
    config.get("evaluation", {}).pop("unsafe_code_execution", None)
    config["recipes"] = {gated_recipe: config["recipes"][gated_recipe]}  # only the gated recipe is trained
    config_sha = _sha(config)
    return {
        "fingerprint": _sha({"config": config_sha, "sources": sources}),
        "sources": sources,
        "config_sha256": config_sha,
    }


def data_sources(recipe: RecipeFile) -> list[tuple[str, str, int | None]]:
    """(source, split, rows) of the target section and of every named source in the data section."""
    from pipeline.recipe.config import all_targets

    found = []
    for target in all_targets(recipe):
        found.append((target.train, "train", target.train_rows))
        if target.test is not None:
            found.append((target.test, "test", target.test_rows))
    found += [(config.source, config.split, config.rows) for config in recipe.data.values()]
    return found


def source_hash(source: str, split: str, rows: int | None) -> str:
    """Content hash of one data source: file bytes, generated rows, or the hub id itself."""
    from data_recipes.catalog import EMBEDDED_PREFIX, embedded_rows, rows_fingerprint
    from data_recipes.sources import fingerprint as file_sha256

    if source.startswith(EMBEDDED_PREFIX):
        # The same rows the run will train on (data_recipes.catalog), so a generator change counts too.
        return rows_fingerprint(embedded_rows(source, split, rows))
    path = Path(source)
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():  # a folder of data files: every file's name and content
        digest = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{item.relative_to(path)}\0{file_sha256(item)}\n".encode())
        return digest.hexdigest()
    return f"hub:{source}"  # remote content is not hashed: pin a revision in the id to retrain on a change


def _sha(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
