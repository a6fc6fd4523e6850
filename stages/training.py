"""Run one training stage with the transformers Trainer: answer-only loss, fixed seeds, no loop of our own."""

from __future__ import annotations

import time
from pathlib import Path

from stages.preemption import preemption_callback
from stages.sft_data import tokenize_for_sft
from stages.train_config import TrainingConfig


def training_arguments(config: TrainingConfig, output_dir: Path, seed: int):
    """Map our typed stage config onto transformers.TrainingArguments."""
    import torch
    from transformers import TrainingArguments

    per_device = config.batch_size // config.grad_accum
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=config.steps,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        lr_scheduler_type=config.scheduler.value,
        warmup_steps=round(config.warmup_ratio * config.steps),
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=False,
    )


def run_trainer(model, tokenizer, train_data, config: TrainingConfig, output_dir: Path, seed: int, max_length: int,
                trainer_class=None) -> dict:
    """Train `model` in place on prompt/completion rows; returns loss history and throughput."""
    from transformers import DataCollatorForSeq2Seq, Trainer, set_seed

    set_seed(seed)
    rows = tokenize_for_sft(train_data, tokenizer, max_length)
    if config.steps == 0:  # e.g. the "frozen untrained prompt" control: nothing to optimise
        return {"train_loss": None, "loss_history": [], "train_seconds": 0.0, "tokens_per_second": None,
                "train_rows": len(rows)}
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, return_tensors="pt")
    trainer = (trainer_class or Trainer)(
        model=model,
        args=training_arguments(config, output_dir, seed),
        train_dataset=rows,
        data_collator=collator,
    )
    from transformers.trainer_utils import get_last_checkpoint

    # After a crash or preemption, pick up optimizer, scheduler, RNG and data position where they were.
    last = get_last_checkpoint(str(output_dir)) if output_dir.exists() else None
    preemption = preemption_callback()
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
    tokens = config.steps * config.batch_size * _mean_length(rows)
    return {
        "train_loss": output.training_loss,
        "loss_history": losses,
        "train_seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 1),
        "train_rows": len(rows),
        "resumed_from": last,
    }


def _mean_length(rows) -> float:
    lengths = [len(ids) for ids in rows["input_ids"]]
    return sum(lengths) / max(1, len(lengths))
