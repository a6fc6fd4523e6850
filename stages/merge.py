"""Stage: weight interpolation of two checkpoints, θ = (1 − α)·θ_start + α·θ_end (no training).

The linear merge of mergekit and of model soups (Wortsman et al., 2022), done as plain state_dict arithmetic on the
saved safetensors: PEFT's merging utilities combine adapters' task vectors, not two whole checkpoints, and the
arithmetic here is one line, exact at α = 0 and α = 1. Every stage saves its model as one whole save_pretrained
folder (under ZeRO-3 the Trainer's save gathers the shards first), so the merge reads whole tensors from disk and
is the same whatever the checkpoints were trained under. Rank 0 alone reads and writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from stages.context import StageContext, StageResult
from stages.handoff import ALWAYS_THERE, Contract, Reads

# Rank 0 reads both folders and writes the merged one; the orchestrator hands its result to the other ranks.
MAIN_PROCESS_ONLY = True

WEIGHTS = "*.safetensors"  # a save_pretrained folder's weight files (one, or the shards its index names)
ENDS = ("base: the base model", "input: the model this stage starts from", "or the name of an earlier stage")


@dataclass
class Config:
    """Interpolation settings: the two checkpoints (by name) and α, the share of the end point."""

    name: str = field(default="", metadata={"help": "stage name, unique in its recipe; default: the kind"})
    alpha: float = field(
        default=0.5,
        metadata={
            "help": "share of `end`: θ = (1 − alpha)·θ_start + alpha·θ_end; "
            "0 keeps start's weights, 1 end's (sweepable)"
        },
    )
    start: str = field(default="base", metadata={"help": "the checkpoint at alpha = 0; " + "; ".join(ENDS)})
    end: str = field(
        default="input",
        metadata={
            "help": "the checkpoint at alpha = 1, whose config, tokenizer "
            "and dtypes the merged model keeps; " + "; ".join(ENDS)
        },
    )

    kind = "merge"
    steps = 0  # trains nothing: the launch checks (batch split, DeepSpeed config) skip it as a 0-step stage

    def __post_init__(self):
        from stages.train_config import name_problem

        self.name = self.name or self.kind
        problem = name_problem(self.name)
        if problem:
            raise ValueError(f"name: {problem}")
        if isinstance(self.alpha, bool) or not (math.isfinite(self.alpha) and 0 <= self.alpha <= 1):
            raise ValueError(f"{self.name}.alpha: must be a number in [0, 1], got {self.alpha}")
        for which in ("start", "end"):
            if not getattr(self, which):
                raise ValueError(f"{self.name}.{which}: must name a checkpoint: base, input or an earlier stage")
        if self.start == self.end:
            raise ValueError(f"{self.name}.end: {self.end!r} is also start; a merge needs two checkpoints")

    def contract(self) -> Contract:
        """Reads the models of the earlier stages it names (base and input are always there); makes no adapter."""
        named = [(which, getattr(self, which)) for which in ("start", "end")]
        return Contract(reads=tuple(Reads(name, which) for which, name in named if name not in ALWAYS_THERE))


def run(config: Config, ctx: StageContext) -> StageResult:
    """Interpolate the two checkpoints into stage_dir/model; hand every adapter on, re-homed next to the merged model
    where it named the input model as its base."""
    start, end = ctx.handoff.model_named(config.start), ctx.handoff.model_named(config.end)
    model_dir = ctx.stage_dir / "model"
    interpolate(
        local_folder(start),
        local_folder(end),
        config.alpha,
        model_dir,
        names=(f"{config.name}.start ({config.start})", f"{config.name}.end ({config.end})"),
    )
    return StageResult(
        model_dir=model_dir,
        adapters=rehomed(ctx, model_dir),
        metrics={"alpha": config.alpha, "start": config.start, "end": config.end},
    )


def interpolate(start: Path, end: Path, alpha: float, out: Path, names=("start", "end")) -> None:
    """Write `end`'s folder to `out` with every weight replaced by (1 − alpha)·start + alpha·end.

    Computed in float32 and cast back to end's dtype, one weight file at a time; integer tensors are end's. The
    weight files (and their index) keep end's layout and names, so tied weights stay saved once, as
    save_pretrained saved them, and the folder loads with from_pretrained like any stage's. Every other file at
    the top of end's folder (config, generation config, tokenizer) is copied as it is.
    """
    import shutil

    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from core.errors import UserError

    start_files, end_files = _shapes(start), _shapes(end)
    start_shapes = {key: shape for shapes in start_files.values() for key, shape in shapes.items()}
    end_shapes = {key: shape for shapes in end_files.values() for key, shape in shapes.items()}
    if start_shapes != end_shapes:
        raise UserError(
            f"{names[0]} and {names[1]}: not the same architecture ({_difference(start_shapes, end_shapes)}"
            f"); a merge needs two checkpoints of one model"
        )
    where = {key: path for path, shapes in start_files.items() for key in shapes}
    shutil.rmtree(out, ignore_errors=True)  # left by an attempt that died before DONE.json
    out.mkdir(parents=True)
    for item in end.iterdir():
        if item.is_file() and not item.match(WEIGHTS) and item.name != "training_args.bin":
            shutil.copy2(item, out / item.name)
    for path, shapes in end_files.items():
        weights, metadata = load_file(path), _metadata(path)
        for source in sorted({where[key] for key in shapes}):
            with safe_open(source, "pt") as handle:
                for key in (k for k in shapes if where[k] == source):
                    theirs, ours = handle.get_tensor(key), weights[key]
                    if ours.is_floating_point():
                        mixed = (1 - alpha) * theirs.to(torch.float32) + alpha * ours.to(torch.float32)
                        weights[key] = mixed.to(ours.dtype)
        save_file(weights, out / path.name, metadata=metadata)


def _shapes(folder: Path) -> dict[Path, dict[str, tuple]]:
    """Each weight file of a save_pretrained folder, with its tensors' shapes by name (nothing loaded)."""
    from safetensors import safe_open

    from core.errors import UserError

    files = sorted(folder.glob(WEIGHTS))
    if not files:
        raise UserError(f"{folder}: no safetensors weights to merge")
    shapes = {}
    for path in files:
        with safe_open(path, "pt") as handle:
            shapes[path] = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    return shapes


def _metadata(path: Path) -> dict | None:
    from safetensors import safe_open

    with safe_open(path, "pt") as handle:
        return handle.metadata()


def _difference(a: dict, b: dict) -> str:
    """The first weight that differs between two {name: shape} maps, in words."""
    for key in sorted(set(a) | set(b)):
        if key not in b:
            return f"{key} only in the first"
        if key not in a:
            return f"{key} only in the second"
        if a[key] != b[key]:
            return f"{key}: {list(a[key])} vs {list(b[key])}"
    return "the same weights"


def local_folder(model) -> Path:
    """A checkpoint's folder on disk: a stage's own, the base's, or a hub id's files from the hub cache."""
    if Path(str(model)).is_dir():
        return Path(str(model))
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(model), allow_patterns=["*.json", WEIGHTS, "*.model", "*.txt", "*.jinja"]))


def rehomed(ctx: StageContext, model_dir: Path) -> dict:
    """The adapters that named the input model as their base, copied next to the merged model and pointed at it
    (as a fine-tune re-homes its prompt), so AutoPeftModel and the registry load them on the merged weights.
    The rest (a merged LoRA's record, an adapter made on another model) pass on as they are, by the hand-off."""
    import json
    import shutil

    from stages.frozen_adapter import point_adapter_at
    from stages.handoff import Scope

    moved, home = {}, _resolved(ctx.model_dir)
    for name, adapter in ctx.handoff.adapters.items():
        config_file = Path(adapter.path) / "adapter_config.json"
        if adapter.scope == Scope.MERGED or not config_file.is_file():
            continue
        if _resolved(json.loads(config_file.read_text()).get("base_model_name_or_path")) != home:
            continue
        copy = ctx.stage_dir / "adapters" / name if len(ctx.handoff.adapters) > 1 else ctx.stage_dir / "adapter"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(adapter.path, copy)
        point_adapter_at(copy, model_dir)
        moved[name] = replace(adapter, path=copy)
    return moved


def _resolved(model) -> str:
    """A model folder as one comparable string (a hub id as it is)."""
    return str(Path(str(model)).resolve()) if model and Path(str(model)).exists() else str(model)
