"""Run one training stage with the transformers Trainer: answer-only loss, fixed seeds, no loop of our own.

Distribution is the Trainer's: launched as N processes (accelerate launch, torchrun, deepspeed) it shards each
step's batch over them, and with a DeepSpeed config it hands the model to DeepSpeed (ZeRO 0-3).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from core import ranks
from core.errors import UserError
from stages.packing import check_packing, packed_collator
from stages.preemption import preemption_callback
from stages.sft_data import sft_collator, tokenize_for_sft
from stages.train_config import TrainingConfig

log = logging.getLogger(__name__)


def per_device_batch(config: TrainingConfig, world_size: int) -> int:
    """Examples per process per forward: our batch_size is global, so results compare across world sizes."""
    share = config.grad_accum * world_size
    if config.batch_size % share:
        raise UserError(
            f"{config.name}.batch_size: {config.batch_size} is not divisible by grad_accum "
            f"{config.grad_accum} x {world_size} processes"
        )
    return config.batch_size // share


def training_arguments(
    config: TrainingConfig,
    output_dir: Path,
    seed: int,
    deepspeed: str | None = None,
    world_size: int | None = None,
    tracking=None,
    arguments_class=None,
    **extra,
):
    """Map our typed stage config onto transformers.TrainingArguments (create it before loading the model:
    under ZeRO-3 from_pretrained then loads each weight straight into its shards). `arguments_class` is a subclass of
    it (TRL's SDFTConfig), `extra` its own fields."""
    import torch
    from transformers import TrainingArguments

    from stages.tracking import trainer_settings

    world_size = world_size or ranks.world_size()
    precision = {"bf16": config.bf16, **deepspeed_precision(deepspeed)}  # fp16 with bf16: refused by validation
    if deepspeed:
        join_deepspeed()
    arguments_class = arguments_class or TrainingArguments
    return arguments_class(
        output_dir=str(output_dir),
        max_steps=config.steps,
        per_device_train_batch_size=per_device_batch(config, world_size),
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        lr_scheduler_type=config.scheduler.value,
        warmup_steps=round(config.warmup_ratio * config.steps),
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        **{checkpointing_field(TrainingArguments): config.gradient_checkpointing},
        **trainer_settings(tracking),
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=False,
        deepspeed=deepspeed,
        **precision,
        **extra,
    )


def checkpointing_field(arguments_class) -> str:
    """transformers renamed gradient_checkpointing (deprecated, removed in v6) to activation_checkpointing."""
    fields = arguments_class.__dataclass_fields__
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def deepspeed_precision(deepspeed) -> dict:
    """bf16/fp16 switched on in the DeepSpeed JSON (a path or its dict) turn on the Trainer's too: transformers
    insists they agree ("auto" there follows the stage's own `bf16`)."""
    if not deepspeed:
        return {}
    import json

    config = deepspeed if isinstance(deepspeed, dict) else json.loads(Path(deepspeed).read_text())
    return {
        mode: True
        for mode in ("bf16", "fp16")
        if isinstance(config.get(mode), dict) and config[mode].get("enabled") is True
    }


def join_deepspeed() -> None:
    """Set DeepSpeed up in this process before the model loads.

    On a CPU, DeepSpeed compiles a C++ shared-memory all-reduce at start-up that only its inference kernels
    use: marked unavailable, training needs no compiler (gloo all-reduces). And ZeRO-3 loading (zero.Init)
    takes the world size from deepspeed.comm, which accelerate sets up on GPUs only: unjoined, a CPU run looks
    like 1 process to it and fails DeepSpeed's batch check (train_batch_size != micro x accum x 1).
    """
    import deepspeed
    import torch

    from core.ranks import BARRIER_TIMEOUT

    if not torch.cuda.is_available():
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if torch.distributed.is_initialized():  # join the launcher's process group; never start one
        deepspeed.comm.init_distributed(auto_mpi_discovery=False, timeout=BARRIER_TIMEOUT)


def run_trainer(
    model,
    tokenizer,
    train_data,
    config: TrainingConfig,
    args,
    max_length: int,
    trainer_class=None,
    tracking=None,
    tokenized: bool = False,
    ctx=None,
):
    """Train `model` in place on prompt/completion rows (or rows already tokenized); returns (metrics, trainer),
    the trainer None at 0 steps. With the config's `selection` (it needs the stage's `ctx`), the model ends with
    the kept check's weights (stages/selection.py)."""
    from transformers import Trainer, set_seed

    from stages.losses import load_reference, loss_trainer, needs_custom_loss
    from stages.selection import selector_for

    selector = selector_for(config, ctx, model, tokenizer)
    if selector is not None:
        train_data = selector.hold_out(train_data)
    rows = train_data if tokenized else tokenize_for_sft(train_data, tokenizer, max_length)
    if config.steps == 0:  # e.g. the "frozen untrained prompt" control: nothing to optimise
        return {
            "train_loss": None,
            "loss_history": [],
            "train_seconds": 0.0,
            "tokens_per_second": None,
            "train_rows": len(rows),
        }, None
    set_seed(args.seed)
    trainer_class = trainer_class or Trainer
    if needs_custom_loss(config):  # dft, eaft, asft or a KL term: the Trainer's compute_loss_func hook
        trainer_class = loss_trainer(trainer_class, config, load_reference(config, ctx))
    collator = sft_collator(tokenizer)
    if config.packing:
        check_packing(model, rows)
        collator = packed_collator(tokenizer, max_length)
    trainer = trainer_class(
        model=model, args=args, train_dataset=rows, data_collator=collator, processing_class=tokenizer
    )  # saved next to every checkpoint
    metrics = fit(trainer, tracking, selector)
    tokens = metrics["steps_run"] * config.batch_size * _mean_length(rows)
    chosen = selector.finish(trainer.state.global_step) if selector is not None else {}
    metrics = {
        **metrics,
        "tokens_per_second": round(tokens / max(metrics["train_seconds"], 1e-3), 1),
        "train_rows": len(rows),
    }
    return {**metrics, **chosen}, trainer


def fit(trainer, tracking=None, selector=None) -> dict:
    """Run a built Trainer to its last step, resuming from the stage's newest whole checkpoint, with the run's
    trackers, no checkpoint at the last step and a signal turned into 'save and stop'; what it ran, as metrics."""
    # After a crash or preemption, pick up optimizer, scheduler, RNG and data position where they were.
    output_dir = Path(trainer.args.output_dir)
    last = ranks.from_main(lambda: last_complete_checkpoint(output_dir))  # rank 0 checks and clears, all follow
    from stages.tracking import attach

    attach(trainer, tracking)
    trainer.add_callback(no_final_checkpoint())
    if selector is not None:
        selector.start(int(last.rsplit("-", 1)[1]) if last else 0)
        trainer.add_callback(selector.callback())
    preemption = preemption_callback()  # after it: a signal at the last step still saves a checkpoint
    trainer.add_callback(preemption)
    preemption.install()
    started = time.perf_counter()
    try:
        output = trainer.train(resume_from_checkpoint=last)
    finally:
        preemption.uninstall()
    preemption.raise_if_stopped(trainer.state.global_step, output_dir)
    seconds = time.perf_counter() - started
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    # Only the steps this call ran: a resumed stage started at its checkpoint's step.
    steps_run = trainer.state.global_step - (int(last.rsplit("-", 1)[1]) if last else 0)
    return {
        "train_loss": output.training_loss,
        "loss_history": losses,
        "train_seconds": round(seconds, 3),
        "steps_run": steps_run,
        "resumed_from": last,
    }


def no_final_checkpoint():
    """A TrainerCallback that skips the checkpoint transformers saves at the last step (it always does with
    save_strategy "steps"). The stage saves its model right after, so that checkpoint, the weights plus the
    optimizer state (3x the weights with AdamW), only costs time and disk; a crash between the two resumes
    from the checkpoint before it."""
    from transformers import TrainerCallback

    class NoFinalCheckpoint(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_save = False

    return NoFinalCheckpoint()


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest checkpoint whose every file a resume reads is whole (stages/saved_files.py).

    transformers writes trainer_state.json last but in place, so a kill while writing it, or while writing any
    file before it, leaves a checkpoint that only looks finished. Such checkpoints are removed (the Trainer
    saves them again when it gets there) and the fallback is said in one line.
    """
    steps = sorted((p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir()), key=_step, reverse=True)
    chosen, broken = None, []
    for path in steps:
        problem = checkpoint_problem(path)
        if problem is None:
            chosen = path
            break
        broken.append((path, problem))
    if broken:
        cut = "; ".join(f"{path.name} ({problem})" for path, problem in broken)
        log.warning(
            "%s: incomplete checkpoint %s: resuming from %s instead",
            output_dir,
            cut,
            chosen.name if chosen else "the start",
        )
        for path, _ in broken:
            shutil.rmtree(path, ignore_errors=True)
    return str(chosen) if chosen else None


def checkpoint_problem(folder: Path) -> str | None:
    """Why a Trainer checkpoint cannot be resumed from, or None: its state must parse and name its own step,
    and every weight, optimizer, scheduler and RNG file must be whole."""
    import json

    from stages.saved_files import folder_problem

    problem = folder_problem(folder, ("trainer_state.json",))
    if problem:
        return problem
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("global_step*")):  # DeepSpeed: its own shards
        return "no weights"
    step = json.loads((folder / "trainer_state.json").read_text()).get("global_step")
    return None if step == _step(folder) else f"trainer_state.json: global_step {step}, not {_step(folder)}"


def _step(folder: Path) -> int:
    tail = folder.name.rsplit("-", 1)[1]
    return int(tail) if tail.isdigit() else -1


def forget_deepspeed() -> None:
    """Clear transformers' global ZeRO-3 switch at the end of a stage: left on, the next from_pretrained (rank 0's
    evaluation, say) would shard the model across ranks that are not loading it, and wait for them forever."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


def _mean_length(rows) -> float:
    lengths = [len(ids) for ids in rows["input_ids"]]
    return sum(lengths) / max(1, len(lengths))
