"""Stage: on-policy self-distillation fine-tuning (Shenfeld et al. 2026's SDFT) through TRL's SDFTTrainer.

Shenfeld, Damani, Hübotter and Agrawal, "Self-Distillation Enables Continual Learning" (arXiv 2601.19897), as TRL
1.16.0 implements it (the version the lock holds): `trl.experimental.sdft.SDFTTrainer` and `SDFTConfig`, in
trl/experimental/sdft/sdft_trainer.py and sdft_config.py. The loss, the sampling and the teacher are TRL's; this
module only builds the dataset TRL expects, maps our settings onto its SDFTConfig and saves the model.

Each step the model (the student) samples `num_generations` answers per prompt from the prompt alone, on-policy;
the teacher, the same model with the row's demonstration (the reference answer) in its prompt, scores the same
answers, and the student is trained toward the teacher's token distribution on them (TRL's `distillation_*`
settings: a top-k divergence by default). No gradient ever flows through the reference answer's own tokens: the
demonstration only conditions the teacher, which is why the paper finds it forgets less than SFT. The teacher is
`teacher: base` (this stage's input model, frozen), `ema` (an average of the student) or `live` (the student itself).

The dataset is TRL's: `prompt` and `privileged_context` (the reference answer, stripped), put together for the teacher
by `teacher_template` (TRL's default `{prompt}\\n\\n{privileged_context}`). Rows reach a stage as text, a chat model's
already rendered through its chat template (data_recipes/formats.py). A row whose prompt the chat template renders
from a conversation (one that ends with a user turn: ChatLayout reads it back, and rendering those turns again must
give the prompt exactly) is handed to TRL as that conversation, so TRL does what it does for conversational rows:
the student's prompt is the template's rendering of it (the very text the evaluation scores), the teacher's the same
conversation with the last user turn's text replaced by `teacher_template` over it, so the reference sits inside the
user's turn, before the assistant header, with the template's own system turn, once. A plain row (no chat template,
`evaluation.chat_template: false`, or a prompt no conversation renders) gives `{prompt}` the row's prompt as written,
as the evaluation sees it. TRL tokenizes a conversation without the tokenizer's own special tokens; where that would
not be the evaluation's token ids (a tokenizer that adds a BOS its template does not write), or where chat and plain
rows are mixed (a dataset column holds one type), the teacher's prompt is rendered here with the same template and
the same composition, and handed to TRL as the privileged context under the template `{privileged_context}`. Which
rows are chat rows is part of the stage key (key_inputs); the template itself is in it through the base's files.
TRL cuts prompts to `max_length` tokens from the left (the teacher's too, demonstration included: the stage logs how
many teacher prompts that cuts, `teacher_prompts_cut` in its metrics) and samples at most `max_new_tokens`. A plain
prompt is encoded with the tokenizer's own special tokens, as every other stage does (data_recipes/encoding.py); one
that already starts with the BOS text is handed over without it, so it does not get a second one.

`batch_size` counts completions per optimizer step, as TRL does: `batch_size / num_generations` prompts per step.
`num_generations` defaults to 1 (TRL's is 8, a GRPO habit: SDFT's loss needs no group of samples), so a step sees
as many prompts as a finetune step. The stage hands on a plain transformers folder, like finetune. TRL's telemetry
ping is switched off, and TRL's version is part of the stage key (its experimental API may change numbers).
"""

from __future__ import annotations

import enum
import logging
import math
import re
from dataclasses import dataclass, field

from stages import finetune
from stages.context import StageContext, StageResult
from stages.losses import Loss

log = logging.getLogger(__name__)

TRL_DEFAULT_TEMPLATE = "{prompt}\n\n{privileged_context}"
RENDERED_TEACHER = "{privileged_context}"  # TRL's template when the teacher's prompt is rendered here (sdft_data)
CHAT_TEACHER = "the reference inside the last user turn, through the chat template"  # key_inputs, for chat rows


class Teacher(str, enum.Enum):
    """TRL's teacher_model_kind."""

    BASE = "base"  # the stage's input model, frozen
    EMA = "ema"  # an exponential moving average of the student (teacher_update_rate every teacher_sync_steps)
    LIVE = "live"  # the student itself


class Distillation(str, enum.Enum):
    """TRL's distillation_mode."""

    TOPK_LOGITS = "topk_logits"
    FULL_LOGITS = "full_logits"
    SAMPLED_TOKEN = "sampled_token"


@dataclass
class Config(finetune.Config):
    """On-policy self-distillation (TRL's SDFTConfig): sampled answers, a teacher that sees the reference."""

    max_new_tokens: int = field(
        default=64, metadata={"help": "the longest sampled answer, in tokens (TRL's max_completion_length)"}
    )
    num_generations: int = field(
        default=1,
        metadata={"help": "answers sampled per prompt; batch_size (completions per step) must be a multiple of it"},
    )
    temperature: float = field(
        default=1.0, metadata={"help": "sampling temperature (TRL scales both models' logits by it)"}
    )
    teacher: Teacher = field(
        default=Teacher.BASE,
        metadata={"help": "base: the input model, frozen; ema: an average of the student; live: the student itself"},
    )
    teacher_update_rate: float = field(
        default=0.05, metadata={"help": "teacher ema: the average's update rate, in (0, 1]"}
    )
    teacher_sync_steps: int = field(default=1, metadata={"help": "teacher ema: optimizer steps between updates"})
    teacher_template: str = field(
        default=TRL_DEFAULT_TEMPLATE,
        metadata={"help": "the teacher's prompt, with {prompt} and {privileged_context} (the reference answer)"},
    )
    generate_from_teacher: bool = field(
        default=False, metadata={"help": "sample from the teacher's prompt instead of the student's (off-policy)"}
    )
    distillation_mode: Distillation = field(
        default=Distillation.TOPK_LOGITS,
        metadata={"help": "topk_logits (the student's top-k tokens), full_logits, or sampled_token (reverse KL)"},
    )
    distillation_alpha: float = field(
        default=0.5,
        metadata={
            "help": "the divergence: 0 forward KL, 1 reverse KL, between them a generalized JSD; sampled_token: 1"
        },
    )
    distillation_topk: int = field(default=100, metadata={"help": "topk_logits: tokens in the support"})
    distillation_is_clip: float | None = field(
        default=2.0, metadata={"help": "clip of the importance ratio to the sampling-time student; null: none"}
    )
    distillation_add_tail: bool = field(
        default=False, metadata={"help": "topk_logits: one more bucket for the mass outside the top k"}
    )
    num_loss_tokens_to_skip: int = field(default=0, metadata={"help": "the first answer tokens left out of the loss"})

    kind = "sdft"

    def __post_init__(self):
        super().__post_init__()
        self.teacher, self.distillation_mode = Teacher(self.teacher), Distillation(self.distillation_mode)
        problem = self.sdft_problem()
        if problem:
            raise ValueError(f"{self.name}.{problem}")

    def sdft_problem(self) -> str | None:
        """What cannot work with TRL's SDFTTrainer here, as 'field: why', or None."""
        if self.prompt_from:
            return (
                "prompt_from: not available for sdft (TRL samples from and scores the plain model); use a finetune "
                "stage for ProMoT's stage 2"
            )
        if self.packing:
            return "packing: not available for sdft (TRL builds each batch from the answers it samples)"
        if self.loss != Loss.CE or self.kl_to is not None:
            return (
                f"{'loss' if self.loss != Loss.CE else 'kl_to'}: sdft's loss is TRL's self-distillation loss "
                f"(distillation_mode, distillation_alpha, ...); leave loss and kl_to out"
            )
        if self.max_new_tokens < 1 or self.num_generations < 1 or self.teacher_sync_steps < 1:
            return "max_new_tokens/num_generations/teacher_sync_steps: must be >= 1"
        if self.batch_size % self.num_generations:
            return (
                f"batch_size: {self.batch_size} completions per step is not a multiple of num_generations "
                f"{self.num_generations} (TRL samples num_generations answers for each prompt of a step)"
            )
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            return f"temperature: must be > 0 and finite, got {self.temperature}"
        if not (math.isfinite(self.teacher_update_rate) and 0 < self.teacher_update_rate <= 1):
            return f"teacher_update_rate: must be in (0, 1], got {self.teacher_update_rate}"
        if not (math.isfinite(self.distillation_alpha) and 0 <= self.distillation_alpha <= 1):
            return f"distillation_alpha: must be in [0, 1], got {self.distillation_alpha}"
        if self.distillation_mode == Distillation.SAMPLED_TOKEN and self.distillation_alpha != 1:
            return "distillation_alpha: sampled_token distills by reverse KL only (TRL): set distillation_alpha: 1.0"
        if self.distillation_topk < 1:
            return f"distillation_topk: must be >= 1, got {self.distillation_topk}"
        clip = self.distillation_is_clip
        if clip is not None and not (math.isfinite(clip) and clip > 0):
            return f"distillation_is_clip: must be > 0 and finite, or null, got {clip}"
        if not 0 <= self.num_loss_tokens_to_skip < self.max_new_tokens:
            return (
                f"num_loss_tokens_to_skip: must be in [0, max_new_tokens) (no answer token would be left to learn "
                f"from), got {self.num_loss_tokens_to_skip}"
            )
        return template_problem(self.teacher_template)

    def deepspeed_problems(self, raw: dict) -> list[str]:
        """Not run under ZeRO-3 here: TRL then builds a second, sharded teacher and gathers the student's whole weights
        for every generation, which no test of this project has run (make test-dist covers the other kinds)."""
        problems = super().deepspeed_problems(raw)
        if (raw.get("zero_optimization") or {}).get("stage") == 3:
            problems.append(
                "zero_optimization.stage: sdft is not run under ZeRO-3 here (TRL's teacher would be a second "
                "sharded model, the student gathered whole for every generation: untested); use ZeRO-2 or plain DDP"
            )
        return problems

    def key_inputs(self, rows=None, tokenizer=None) -> dict:
        """Inputs of the stage key besides its settings: TRL's version (its experimental trainer may change) and, where
        some rows are chat rows (the plan's tokenizer, whose template is gone under evaluation.chat_template: false),
        that their teacher reads the reference inside the user's turn. Plain rows add nothing, so their keys are as
        before chat rows were told apart."""
        from importlib import metadata

        try:
            inputs = {"trl": metadata.version("trl")}
        except metadata.PackageNotFoundError:
            inputs = {"trl": None}
        if rows is not None and tokenizer is not None and has_chat_rows(rows["prompt"], tokenizer):
            inputs["teacher_prompt"] = CHAT_TEACHER
        return inputs


def template_problem(template: str) -> str | None:
    """What is wrong with a teacher template, as 'teacher_template: why', or None."""
    missing = [name for name in ("{prompt}", "{privileged_context}") if name not in template]
    if missing:
        return f"teacher_template: must contain {' and '.join(missing)}"
    try:
        template.format(prompt="", privileged_context="")
    except (KeyError, IndexError, ValueError) as error:
        return (
            f"teacher_template: {error!r}; only {{prompt}} and {{privileged_context}} may be in braces "
            f"(write {{{{ and }}}} for literal braces)"
        )
    return None


def sdft_settings(config: Config, max_length: int, trust_remote_code: bool = False) -> dict:
    """Our fields as TRL's SDFTConfig fields (besides the TrainingArguments ones every stage maps)."""
    return {
        "max_prompt_length": max_length,
        "max_completion_length": config.max_new_tokens,
        "num_generations": config.num_generations,
        "temperature": config.temperature,
        "teacher_model_kind": config.teacher.value,
        "teacher_update_rate": config.teacher_update_rate,
        "teacher_sync_steps": config.teacher_sync_steps,
        "teacher_prompt_template": config.teacher_template,
        "generate_from_teacher": config.generate_from_teacher,
        "distillation_mode": config.distillation_mode.value,
        "distillation_alpha": config.distillation_alpha,
        "distillation_topk": config.distillation_topk,
        "distillation_is_clip": config.distillation_is_clip,
        "distillation_add_tail": config.distillation_add_tail,
        "num_loss_tokens_to_skip": config.num_loss_tokens_to_skip,
        "trust_remote_code": trust_remote_code,
        "shuffle_dataset": True,
    }


def sdft_arguments(config: Config, ctx: StageContext):
    """TRL's SDFTConfig for the stage: our TrainingArguments mapping (stages/training.py) plus sdft_settings."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the stage names TRL's version in its key instead
    from trl.experimental.sdft import SDFTConfig

    from stages.training import training_arguments

    return training_arguments(
        config,
        ctx.stage_dir / "trainer",
        ctx.seed,
        ctx.deepspeed,
        tracking=ctx.tracking,
        arguments_class=SDFTConfig,
        **sdft_settings(config, ctx.max_length, ctx.trust_remote_code),
    )


def render_chat(tokenizer, turns: list[dict]) -> str:
    """A conversation as the chat template renders it for the model to answer (as data_recipes/formats.py does)."""
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


class ChatLayout:
    """A chat template's layout, learnt by rendering conversations of marker texts, to read a rendered prompt back into
    the conversation it renders: the turns, ending with a user turn, whose rendering with add_generation_prompt is the
    prompt exactly (checked by rendering them again)."""

    MARK = "FORGETLESSTURN{}X"
    MOST_TURNS = 64

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.patterns: dict[tuple, re.Pattern | None] = {}
        self.user_header = self._user_header()

    def render(self, turns: list[dict]) -> str:
        return render_chat(self.tokenizer, turns)

    def _pieces(self, roles: tuple) -> list[str] | None:
        """The text around each turn's content when the template renders these roles, or None if it refuses them."""
        marks = [self.MARK.format(n) for n in range(len(roles))]
        try:
            text = self.render([{"role": role, "content": mark} for role, mark in zip(roles, marks)])
        except Exception:  # a template that refuses the layout (a system turn, roles that must alternate)
            return None
        pieces = []
        for mark in marks:
            before, found, text = text.partition(mark)
            if not found or mark in text:
                return None
            pieces.append(before)
        return [*pieces, text]

    def _user_header(self) -> str:
        """What every user turn's text follows, first or later (the common end of the text before each), or ''."""
        pieces = self._pieces(("user", "assistant", "user"))
        if pieces is None:
            return ""
        first, later = pieces[0], pieces[2]
        size = 0
        while size < min(len(first), len(later)) and first[-1 - size] == later[-1 - size]:
            size += 1
        return first[len(first) - size :]

    def _pattern(self, roles: tuple) -> re.Pattern | None:
        if roles not in self.patterns:
            pieces = self._pieces(roles)
            self.patterns[roles] = None if pieces is None else re.compile("(.*?)".join(map(re.escape, pieces)), re.S)
        return self.patterns[roles]

    def turns(self, prompt: str) -> list[dict] | None:
        """The conversation this prompt renders, most user turns first (a history is not read as one user text), or
        None: a plain prompt, or one no conversation of alternating turns renders."""
        users = min(prompt.count(self.user_header), self.MOST_TURNS) if self.user_header else 1
        for count in range(max(users, 1), 0, -1):
            for system in (False, True):
                roles = ("system",) * system + ("user", "assistant") * (count - 1) + ("user",)
                pattern = self._pattern(roles)
                match = pattern.fullmatch(prompt) if pattern is not None else None
                if match is None:
                    continue
                turns = [{"role": role, "content": text} for role, text in zip(roles, match.groups())]
                if self.render(turns) == prompt:
                    return turns
        return None


def chat_turns(prompts: list[str], tokenizer) -> list[list[dict] | None]:
    """Each prompt's conversation (ChatLayout.turns), all None where the tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return [None] * len(prompts)
    layout = ChatLayout(tokenizer)
    return [layout.turns(prompt) for prompt in prompts]


def has_chat_rows(prompts: list[str], tokenizer) -> bool:
    return any(turns is not None for turns in chat_turns(prompts, tokenizer))


def teacher_turns(turns: list[dict], reference: str, template: str) -> list[dict]:
    """TRL's teacher conversation (DemonstrationTeacherContextBuilder): the turns before the last user turn, then that
    turn's text with the reference put in by the teacher template."""
    return [
        *turns[:-1],
        {"role": "user", "content": template.format(prompt=turns[-1]["content"], privileged_context=reference)},
    ]


@dataclass
class SdftData:
    """TRL's dataset, the teacher template to give TRL, and what the teacher's prompt is for each row."""

    rows: object  # datasets.Dataset: prompt (text, or a conversation) and privileged_context
    teacher_template: str
    layout: str  # plain, conversational, or rendered (the teacher's prompt rendered here)
    student_prompts: list[str]  # as text, BOS text included where the template writes it
    teacher_prompts: list[str]


def sdft_data(rows, tokenizer, template: str = TRL_DEFAULT_TEMPLATE, chat: bool = True) -> SdftData:
    """TRL's columns from prompt/completion rows: the prompt (a chat row's conversation), and the reference answer as
    privileged context. A text prompt that starts with the BOS text loses it when the tokenizer adds its own
    (data_recipes/encoding.py). `chat`: evaluation.chat_template as resolved (off: every row is plain)."""
    import datasets

    from data_recipes.encoding import special_prefix

    prompts, references = list(rows["prompt"]), [c.strip() for c in rows["completion"]]
    bos = tokenizer.bos_token
    adds_bos = bool(bos) and bool(special_prefix(tokenizer))

    def strip_bos(text: str) -> str:  # the BOS the tokenizer will add again
        return text[len(bos) :] if adds_bos and text.startswith(bos) else text

    texts = [strip_bos(p) for p in prompts]
    conversations = chat_turns(prompts, tokenizer) if chat else [None] * len(prompts)
    plain = [template.format(prompt=p, privileged_context=r) for p, r in zip(texts, references)]
    if all(turns is None for turns in conversations):
        return SdftData(
            datasets.Dataset.from_dict({"prompt": texts, "privileged_context": references}),
            template,
            "plain",
            prompts,
            plain,
        )
    rendered = [
        render_chat(tokenizer, teacher_turns(turns, ref, template)) if turns is not None else None
        for turns, ref in zip(conversations, references)
    ]
    if all(turns is not None for turns in conversations) and (
        tokenizer(prompts, add_special_tokens=False)["input_ids"] == tokenizer(texts)["input_ids"]
    ):  # TRL's encoding of a conversation is the evaluation's encoding of its text
        return SdftData(
            datasets.Dataset.from_dict({"prompt": conversations, "privileged_context": references}),
            template,
            "conversational",
            prompts,
            rendered,
        )
    without_bos = [None if t is None else strip_bos(t) for t in rendered]
    teachers = [plain_text if chat_text is None else chat_text for chat_text, plain_text in zip(without_bos, plain)]
    return SdftData(
        datasets.Dataset.from_dict({"prompt": texts, "privileged_context": teachers}),
        RENDERED_TEACHER,
        "rendered",
        prompts,
        teachers,
    )


def sdft_rows(rows, tokenizer):
    """TRL's dataset for plain rows (sdft_data without a chat template)."""
    return sdft_data(rows, tokenizer, chat=False).rows


def teacher_prompts_cut(data: SdftData, tokenizer, max_length: int) -> int:
    """How many teacher prompts TRL cuts (longer than max_length tokens, as TRL encodes them)."""
    if data.layout == "conversational":
        lengths = [len(ids) for ids in tokenizer(data.teacher_prompts, add_special_tokens=False)["input_ids"]]
    else:
        lengths = [len(ids) for ids in tokenizer(data.teacher_prompts)["input_ids"]]
    return sum(length > max_length for length in lengths)


def trainer_class():
    """TRL's SDFTTrainer, without its usage ping to the Hub (a training run here makes no network call)."""
    from trl.experimental.sdft import SDFTTrainer

    class Trainer(SDFTTrainer):
        def _send_telemetry(self):
            return None

    return Trainer


def run(config: Config, ctx: StageContext) -> StageResult:
    """Self-distil on-policy with TRL's SDFTTrainer; save a plain transformers folder."""
    from core import ranks
    from core.errors import UserError
    from stages.model_io import load_model
    from stages.training import fit, forget_deepspeed

    args = sdft_arguments(config, ctx)  # before the model loads, as under ZeRO-3 every stage does
    model_dir = ctx.stage_dir / "model"
    try:
        model, tokenizer = load_model(ctx.model_dir, ctx.trust_remote_code)
        vocab = model.get_output_embeddings().weight.shape[0]
        if config.distillation_mode == Distillation.TOPK_LOGITS and config.distillation_topk > vocab:
            raise UserError(
                f"{config.name}.distillation_topk: {config.distillation_topk} is more than the model's "
                f"{vocab} tokens; set it to at most {vocab}"
            )
        chat = ctx.extra.get("evaluation", {}).get("chat_template", True)
        data = sdft_data(ctx.train_data, tokenizer, config.teacher_template, chat)
        # Set after SDFTConfig checked it, which RENDERED_TEACHER (no {prompt}) would not pass; TRL only formats it.
        args.teacher_prompt_template = data.teacher_template
        cut = teacher_prompts_cut(data, tokenizer, ctx.max_length)
        log.info("%s: %s rows, %d teacher prompt(s) over max_length %d", config.name, data.layout, cut, ctx.max_length)
        if cut:
            log.warning(
                "%s: %d of %d teacher prompts are longer than max_length %d and lose their start (TRL cuts from the "
                "left)",
                config.name,
                cut,
                len(data.rows),
                ctx.max_length,
            )
        rows = data.rows
        trainer = trainer_class()(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
        metrics = fit(trainer, ctx.tracking)
        logs = trainer.state.log_history
        metrics.update(
            train_rows=len(rows),
            teacher_prompts_cut=cut,
            distillation_loss_history=[
                log["sdft/distillation_loss"] for log in logs if "sdft/distillation_loss" in log
            ],
            completion_length_history=[
                log["completions/mean_length"] for log in logs if "completions/mean_length" in log
            ],
        )
        # The Trainer's save gathers ZeRO shards; rank 0 writes a plain save_pretrained folder.
        trainer.save_model(str(model_dir))
    finally:
        forget_deepspeed()
    if ranks.is_main():  # safetensors only, as load_model reads it: no pickled TrainingArguments
        (model_dir / "training_args.bin").unlink(missing_ok=True)
    return StageResult(model_dir=model_dir, metrics=metrics)
