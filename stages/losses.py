"""Training losses other than plain cross-entropy, through the Trainer's own `compute_loss_func` hook.

Each follows LLaMA-Factory's implementation, src/llamafactory/train/trainer_utils.py:
  dft   `_dft_cross_entropy` (hiyouga/LLaMA-Factory@908cd68e457daf38e7aae14cbc99e5ac01524496; PR #8917): each answer
        token's cross-entropy times the model's probability of that token, detached (Wu et al. 2025, "On the
        generalization of SFT"). TRL's `SFTConfig(loss_type="dft")` is the same formula.
  eaft  `_eaft_cross_entropy` (PR #9720, from ymxyll/LlamaFactory-EAFT@e2ce19e8efcc226450ee8f2b81dfe4e69f1f945d):
        each token's cross-entropy times (H_20 / 3) ** alpha, detached, where H_20 is the entropy of the softmax over
        the token's 20 largest logits (Diao et al. 2026, "Entropy-adaptive fine-tuning"). Confident tokens (low
        entropy) that the data contradicts get a small weight.
  asft  `_asft_cross_entropy` (PR #10174, zhuchichi56/ASFT): DFT plus alpha times KL(reference || model) per answer
        token, the reference a frozen copy of the model the stage starts from (Zhu et al., ICLR 2026).
  kl    a KL(reference || model) term, with its own weight, added to any of the above (`kl_to: base | input`).

One difference from the reference code, on purpose: the KL term is summed over answer tokens and divided by the
Trainer's `num_items_in_batch` (the answer tokens of the whole accumulated step), as the cross-entropy terms are,
where LLaMA-Factory takes a mean per micro-batch. The two agree when a step is one micro-batch on one process; ours
keeps gradient accumulation and DDP from reweighting examples.
"""

from __future__ import annotations

import enum

IGNORE_INDEX = -100
EAFT_TOP_K = 20  # the reference's top-k entropy approximation
EAFT_SCALE = 3.0  # the reference's normaliser: ln(20) ~ 3.0, the largest entropy over 20 logits
DEFAULT_ALPHA = {"eaft": 1.0, "asft": 0.1}  # the reference defaults (eaft_alpha, asft_alpha)


class Loss(str, enum.Enum):
    """The token loss of a training stage."""

    CE = "ce"
    DFT = "dft"
    EAFT = "eaft"
    ASFT = "asft"


LOSSES = {  # what `pipeline ls` says of each
    "ce": "cross-entropy on the answer tokens (the default)",
    "dft": "each token's cross-entropy times its detached probability (LLaMA-Factory use_dft_loss, TRL dft)",
    "eaft": "cross-entropy times (top-20 entropy / 3) ** loss_alpha, detached (LLaMA-Factory use_eaft_loss)",
    "asft": "dft + loss_alpha x KL(reference || model), the reference the stage's input (LLaMA-Factory use_asft_loss)",
    "kl_to": "base | input: adds kl_weight x KL(reference || model) to any loss above",
}


class KLTo(str, enum.Enum):
    """Which frozen model a KL term anchors to: the recipe's base, or the model the stage starts from."""

    BASE = "base"
    INPUT = "input"


def shifted(logits, labels):
    """Flat next-token logits and their labels. A soft prompt adds positions in front of the text (PEFT): only the
    last len(labels) positions are the text's."""
    import torch

    logits = logits[:, -labels.shape[1] :].float()
    labels = torch.nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].to(logits.device)
    return logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)


def token_weights(kind: str, logits, per_token_ce, alpha: float):
    """The detached weight of each answer token's cross-entropy under `kind`."""
    import torch

    with torch.no_grad():
        if kind in (Loss.DFT, Loss.ASFT):
            return torch.exp(-per_token_ce)  # the model's probability of the target token
        if kind == Loss.EAFT:
            top = torch.topk(logits, k=min(EAFT_TOP_K, logits.shape[-1]), dim=-1).values
            log_p = top - torch.logsumexp(top, dim=-1, keepdim=True)
            entropy = -(log_p.exp() * log_p).sum(dim=-1)
            return torch.pow(entropy / EAFT_SCALE, alpha)
        return torch.ones_like(per_token_ce)


def weighted_loss(
    kind: str,
    logits,
    labels,
    alpha: float = 1.0,
    num_items_in_batch=None,
    reference_logits=None,
    kl_weight: float = 0.0,
):
    """The stage's loss for one micro-batch: the weighted cross-entropy over answer tokens, plus kl_weight x
    KL(reference || model) when reference logits are given; a sum over tokens / num_items_in_batch (else a mean)."""
    import torch

    flat_logits, flat_labels = shifted(logits, labels)
    valid = flat_labels != IGNORE_INDEX
    if not valid.any():
        return flat_logits.sum() * 0.0  # keeps the graph: every rank still takes part in the backward
    logits_v, labels_v = flat_logits[valid], flat_labels[valid]
    per_token = torch.nn.functional.cross_entropy(logits_v, labels_v, reduction="none")
    total = (per_token * token_weights(kind, logits_v, per_token, alpha)).sum()
    if reference_logits is not None and kl_weight:
        ref_flat, _ = shifted(reference_logits, labels)
        total = total + kl_weight * token_kl(logits_v, ref_flat[valid]).sum()
    if num_items_in_batch is None:
        return total / valid.sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def token_kl(logits, reference_logits):
    """KL(reference || model) per token, as torch's kl_div(log p_model, p_reference) summed over the vocabulary."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(logits, dim=-1), F.softmax(reference_logits.float(), dim=-1), reduction="none").sum(
        dim=-1
    )


def reference_weight(config) -> float:
    """The KL term's weight: ASFT's alpha, else kl_weight (0 without kl_to)."""
    if config.loss == Loss.ASFT:
        return alpha_of(config)
    return config.kl_weight if config.kl_to is not None else 0.0


def alpha_of(config) -> float:
    return config.loss_alpha if config.loss_alpha is not None else DEFAULT_ALPHA.get(Loss(config.loss).value, 1.0)


def reference_of(config) -> KLTo | None:
    """The model a KL term anchors to, or None when the stage has no KL term (ASFT's default: its input)."""
    if config.loss == Loss.ASFT:
        return config.kl_to or KLTo.INPUT
    return config.kl_to


def needs_custom_loss(config) -> bool:
    return config.loss != Loss.CE or reference_of(config) is not None


def loss_trainer(trainer_class, config, reference=None):
    """`trainer_class` with the stage's loss: a `compute_loss_func` (given to its constructor) and, with a KL term,
    the frozen reference model's logits for each batch, taken just before the Trainer's own compute_loss."""
    import torch

    alpha, weight = alpha_of(config), reference_weight(config)
    seen = {}

    def loss_func(outputs, labels, num_items_in_batch=None):
        return weighted_loss(
            Loss(config.loss), outputs["logits"], labels, alpha, num_items_in_batch, seen.pop("reference", None), weight
        )

    class LossTrainer(trainer_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, compute_loss_func=loss_func, **kwargs)
            if reference is not None:
                reference.to(self.args.device)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if reference is not None:
                with torch.no_grad():
                    seen["reference"] = reference(**{k: v for k, v in inputs.items() if k != "labels"}).logits
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )

    return LossTrainer


def load_reference(config, ctx):
    """The frozen reference model a KL term needs, loaded once (None without one)."""
    choice = reference_of(config)
    if choice is None:
        return None
    if ctx is None:  # train_config.loss_problem refuses a KL term on the kinds that do not pass their context
        raise RuntimeError(f"{config.name}: a KL term needs the stage's context to find its reference model")
    from stages.model_io import load_model

    path = ctx.handoff.base_dir if choice == KLTo.BASE else ctx.model_dir
    model, _ = load_model(path, ctx.trust_remote_code)
    model.eval()
    for param in model.parameters():
        param.requires_grad = False
    return model
