"""Multi-task ProMoT's stage 2: every weight trains while each example carries its own task's frozen soft prompt.

PEFT keeps one active prompt-tuning adapter per forward (its MultitaskPromptTuning is another method: one shared
prompt scaled per task). So the prompts are loaded with PEFT, as adapters of one PeftModel, and the forward does what
PeftModelForCausalLM.forward does for prompt tuning, row by row: the row's prompt embeddings before its token
embeddings, the attention mask extended with ones and the labels with IGNORE_INDEX (no position ids, as in PEFT).
One forward per batch, so DDP and ZeRO-2 see an ordinary module; ZeRO-3 is refused (finetune.deepspeed_problems).
"""

from __future__ import annotations

from core.errors import UserError
from stages.sft_data import IGNORE_INDEX


def task_indices(config, adapters: list, target_names: list[str]) -> dict[str, int]:
    """Which prompt (its position in prompt_from) each target task's rows carry; one prompt per task."""
    index = {}
    for i, (name, adapter) in enumerate(zip(config.prompt_from, adapters)):
        if adapter.kind != "prompt":
            raise UserError(
                f"{config.name}.prompt_from: {name!r} is a {adapter.kind} adapter; several prompts "
                f"(multi-task ProMoT) must all be soft prompts"
            )
        for task in adapter.tasks or target_names:
            if task in index:
                raise UserError(
                    f"{config.name}.prompt_from: {config.prompt_from[index[task]]!r} and {name!r} are "
                    f"both prompts for target {task!r}; train one prompt per target task"
                )
            index[task] = i
    return index


def with_task_index(rows, train_data, index: dict[str, int], config):
    """Tokenized rows with the prompt each carries (`task_index`); a row of a task with no prompt is an error."""
    tasks = train_data["task"] if "task" in train_data.column_names else [""] * len(train_data)
    missing = sorted({task or "(not a target)" for task in tasks if task not in index})
    if missing:
        raise UserError(
            f"{config.name}.data: rows of {', '.join(missing)} have no prompt in prompt_from "
            f"({', '.join(config.prompt_from)}); train on the targets' rows only, or add their prompts"
        )
    return rows.add_column("task_index", [index[task] for task in tasks])


def multi_prompt_model(model, adapters: dict):
    """`model` with every prompt of `adapters` (name -> Adapter) loaded, frozen, in one PeftModel, wrapped so that
    each row of a batch gets the prompt its `task_index` names."""
    from stages.model_io import attach_adapter

    names = list(adapters)
    peft = attach_adapter(model, adapters[names[0]].path, name=names[0])
    for name in names[1:]:
        peft.load_adapter(str(adapters[name].path), adapter_name=name, is_trainable=False)
    lengths = {peft.peft_config[name].num_virtual_tokens for name in names}
    if len(lengths) > 1:
        raise UserError(
            f"prompt_from: the prompts ({', '.join(names)}) have different num_virtual_tokens "
            f"({sorted(lengths)}); give every prompt_tune stage the same length"
        )
    for name, param in peft.named_parameters():
        param.requires_grad = "prompt_encoder" not in name  # every base weight trains; the prompts stay as they are
    return MultiPromptModel(peft, names)


def _module():
    import torch

    class Module(torch.nn.Module):
        def __init__(self, peft, names: list[str]):
            super().__init__()
            self.peft, self.names = peft, names
            self.config = peft.get_base_model().config  # the Trainer reads the model's config

        def get_base_model(self):
            return self.peft.get_base_model()

        def prompts(self):
            """(tasks, p, hidden): each prompt's embeddings, as PEFT's PromptEmbedding holds them."""
            return torch.stack([self.peft.prompt_encoder[name].embedding.weight for name in self.names])

        def forward(self, input_ids, attention_mask, labels=None, task_index=None, **kwargs):
            base = self.get_base_model()
            embeds = base.get_input_embeddings()(input_ids)
            prefix = self.prompts()[task_index].to(embeds.dtype)
            rows, length = prefix.shape[0], prefix.shape[1]
            embeds = torch.cat([prefix, embeds], dim=1)
            attention_mask = torch.cat([attention_mask.new_ones(rows, length), attention_mask], dim=1)
            if labels is not None:
                labels = torch.cat([labels.new_full((rows, length), IGNORE_INDEX), labels], dim=1)
            return base(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    return Module


def MultiPromptModel(peft, names: list[str]):  # noqa: N802 - a class, built on first use (torch loads lazily)
    return _module()(peft, names)


def run_multi(config, ctx):
    """Fine-tune every weight with each row's own frozen prompt; save a plain transformers folder and pass every
    prompt on (re-homed next to the model, under adapters/<name>)."""
    import shutil
    from dataclasses import replace

    from core import ranks
    from stages.context import StageResult
    from stages.frozen_adapter import frozen_prompt_trainer, point_adapter_at
    from stages.model_io import load_model
    from stages.sft_data import tokenize_for_sft
    from stages.training import forget_deepspeed, run_trainer, training_arguments

    adapters = {name: ctx.handoff.adapters[name] for name in config.prompt_from}
    index = task_indices(config, list(adapters.values()), ctx.extra.get("target_names") or [])
    args = training_arguments(config, ctx.stage_dir / "trainer", ctx.seed, ctx.deepspeed, tracking=ctx.tracking)
    model_dir = ctx.stage_dir / "model"
    folders = {name: f"adapters/{name}" for name in adapters}
    try:
        model, tokenizer = load_model(ctx.model_dir, ctx.trust_remote_code)
        trainee = multi_prompt_model(model, adapters)
        rows = with_task_index(
            tokenize_for_sft(ctx.train_data, tokenizer, ctx.max_length), ctx.train_data, index, config
        )
        trainer_class = frozen_prompt_trainer(None, {folders[n]: a.path for n, a in adapters.items()})
        metrics, trainer = run_trainer(
            trainee,
            tokenizer,
            rows,
            config,
            args,
            ctx.max_length,
            trainer_class=trainer_class,
            tracking=ctx.tracking,
            tokenized=True,
        )
        trainer.save_model(str(model_dir))
    finally:
        forget_deepspeed()
    if ranks.is_main():  # safetensors only, as load_model reads it: no pickled TrainingArguments
        (model_dir / "training_args.bin").unlink(missing_ok=True)
    handed = {}
    for name, adapter in adapters.items():
        out = ctx.stage_dir / folders[name]
        if ranks.is_main():  # each (unchanged) prompt next to the model rather than inside it
            shutil.rmtree(out, ignore_errors=True)  # left by an attempt that died before DONE.json
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(model_dir / folders[name], out)
            point_adapter_at(out, model_dir)
        handed[name] = replace(adapter, path=out)
    if ranks.is_main():
        shutil.rmtree(model_dir / "adapters", ignore_errors=True)
    metrics["prompts"] = {name: sorted(task for task, i in index.items() if i == n) for n, name in enumerate(adapters)}
    return StageResult(model_dir=model_dir, adapters=handed, metrics=metrics)
