"""The losses of stages/losses.py against their reference formulas, on a fixed batch.

Each reference below is written out step by step as LLaMA-Factory's trainer_utils.py computes it (the file and commits
stages/losses.py names): one micro-batch, a mean over its answer tokens.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from stages.losses import Loss, token_kl, weighted_loss

VOCAB = 40


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, VOCAB, generator=generator) * 3
    reference = torch.randn(2, 6, VOCAB, generator=generator) * 3
    labels = torch.randint(0, VOCAB, (2, 6), generator=generator)
    labels[0, :2] = -100  # a prompt
    labels[1, :4] = -100
    return logits, reference, labels


def reference_terms(logits, labels):
    """Next-token logits and targets over answer tokens, and their cross-entropy, as the reference flattens them."""
    logits, labels = logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1)
    keep = labels != -100
    logits, labels = logits[keep], labels[keep]
    return logits, labels, F.cross_entropy(logits, labels, reduction="none")


def test_ce_is_the_mean_answer_token_cross_entropy(batch):
    logits, _, labels = batch
    _, _, ce = reference_terms(logits, labels)
    assert weighted_loss(Loss.CE, logits, labels).item() == pytest.approx(ce.mean().item(), rel=1e-6)


def test_dft_weighs_each_token_by_its_probability(batch):
    logits, _, labels = batch
    _, _, ce = reference_terms(logits, labels)
    expected = (ce * torch.exp(-ce)).mean()
    assert weighted_loss(Loss.DFT, logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert expected.item() < ce.mean().item()  # the weights are probabilities: a real difference from CE


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_eaft_weighs_each_token_by_its_top20_entropy(batch, alpha):
    logits, _, labels = batch
    flat, _, ce = reference_terms(logits, labels)
    expected = []
    for row, loss in zip(flat, ce):
        top = sorted(row.tolist(), reverse=True)[:20]
        total = math.log(sum(math.exp(v) for v in top))
        entropy = -sum(math.exp(v - total) * (v - total) for v in top)
        expected.append(loss.item() * (entropy / 3.0) ** alpha)
    got = weighted_loss(Loss.EAFT, logits, labels, alpha=alpha).item()
    assert got == pytest.approx(sum(expected) / len(expected), rel=1e-5)


def test_asft_is_dft_plus_alpha_kl_to_the_reference(batch):
    logits, reference, labels = batch
    flat, _, ce = reference_terms(logits, labels)
    ref_flat, _, _ = reference_terms(reference, labels)
    q = F.softmax(ref_flat, dim=-1)
    kl = (q * (torch.log(q) - F.log_softmax(flat, dim=-1))).sum(-1)  # KL(reference || model), by hand
    expected = (ce * torch.exp(-ce)).mean() + 0.1 * kl.mean()
    got = weighted_loss(Loss.ASFT, logits, labels, reference_logits=reference, kl_weight=0.1)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert token_kl(flat, ref_flat).mean().item() == pytest.approx(kl.mean().item(), rel=1e-5)


def test_the_kl_term_is_zero_against_itself_and_its_gradient_only_moves_the_model(batch):
    logits, _, labels = batch
    own = logits.clone().requires_grad_()
    with_kl = weighted_loss(Loss.CE, own, labels, reference_logits=logits.clone(), kl_weight=5.0)
    assert with_kl.item() == pytest.approx(weighted_loss(Loss.CE, logits, labels).item(), rel=1e-6)
    with_kl.backward()
    assert own.grad is not None and torch.isfinite(own.grad).all()


def test_dft_and_eaft_weights_carry_no_gradient(batch):
    """The reference detaches the weights: the gradient of DFT is p x d(CE), not d(p x CE)."""
    logits, _, labels = batch
    own = logits.clone().requires_grad_()
    weighted_loss(Loss.DFT, own, labels).backward()
    flat, targets, ce = reference_terms(logits, labels)
    flat = flat.clone().requires_grad_()
    probability = torch.exp(-F.cross_entropy(flat, targets, reduction="none")).detach()
    (F.cross_entropy(flat, targets, reduction="none") * probability).mean().backward()
    # the answer positions' gradients agree (the shifted positions, flattened the same way)
    got = own.grad[:, :-1].reshape(-1, VOCAB)[(labels[:, 1:].reshape(-1) != -100)]
    assert torch.allclose(got, flat.grad, atol=1e-6)


def test_a_soft_prompts_extra_positions_are_dropped(batch):
    """PEFT puts a soft prompt's positions in front of the text: only the last len(labels) positions are scored."""
    logits, _, labels = batch
    prompted = torch.cat([torch.randn(2, 3, VOCAB), logits], dim=1)
    assert weighted_loss(Loss.DFT, prompted, labels).item() == pytest.approx(
        weighted_loss(Loss.DFT, logits, labels).item(), rel=1e-6
    )


def test_num_items_in_batch_divides_the_sum(batch):
    logits, _, labels = batch
    answer_tokens = int((labels[:, 1:] != -100).sum())
    mean = weighted_loss(Loss.EAFT, logits, labels).item()
    assert weighted_loss(Loss.EAFT, logits, labels, num_items_in_batch=2 * answer_tokens).item() == pytest.approx(
        mean / 2, rel=1e-6
    )
