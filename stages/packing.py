"""Padding-free training batches: each step's examples packed into rows, attention kept within each example."""

from __future__ import annotations

from core.errors import UserError
from stages.sft_data import IGNORE_INDEX


def packed_collator(tokenizer, row_length: int, pad_id: int | None = None):
    """Padding-free batches: the same examples as `sft_collator`, packed into as few rows as fit.

    Each step keeps the recipe's examples (so the loss is the unpacked loss, up to float rounding), but they
    are packed first-fit-decreasing into rows of `row_length` tokens. `DataCollatorWithFlattening` joins each
    row's examples, restarting position ids and masking the label at every boundary; with no attention mask,
    transformers reads the restarts as packed sequences and keeps attention within each example (sdpa, eager,
    flash and flex attention alike). Rows of max_length rather than one flattened row keep attention cost
    per row, which matters without varlen flash attention (a CPU, sdpa). The batch says use_cache=False.
    """
    from transformers import DataCollatorWithFlattening

    flatten = DataCollatorWithFlattening(return_tensors="pt")
    pad_id = tokenizer.pad_token_id if pad_id is None else pad_id

    def collate(features):
        import torch

        rows = [
            flatten([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in row])
            for row in _first_fit(features, row_length)
        ]
        width = max(row["input_ids"].shape[1] for row in rows)
        batch = {
            key: torch.full((len(rows), width), fill, dtype=torch.long)
            for key, fill in (("input_ids", pad_id), ("labels", IGNORE_INDEX), ("position_ids", 0))
        }
        for index, row in enumerate(rows):
            used = row["input_ids"].shape[1]
            for key in batch:
                batch[key][index, :used] = row[key][0]
            batch["position_ids"][index, used:] = torch.arange(width - used)  # the pad tail: a sequence of its own
        # transformers detects packed rows only when no KV cache exists, and models whose config says
        # use_cache (most hub models) build one even in training: examples would then see each other.
        return {**batch, "use_cache": False}

    return collate


def _first_fit(features, row_length: int) -> list[list]:
    """Bins of examples, longest first, each into the first row with room (an example longer than a row gets one)."""
    rows, room = [], []
    for feature in sorted(features, key=lambda f: -len(f["input_ids"])):
        size = len(feature["input_ids"])
        slot = next((i for i, free in enumerate(room) if size <= free), None)
        if slot is None:
            rows.append([feature])
            room.append(max(row_length, size) - size)
        else:
            rows[slot].append(feature)
            room[slot] -= size
    return rows


def check_packing(model, rows, tolerance: float = 1e-3) -> None:
    """Refuse to train if this model lets packed examples see each other, or ignores their position ids.

    transformers keeps attention within each packed example only for models built on its masking utilities;
    older or remote-code models would silently attend across examples. One packed row of two examples, a then
    b, is checked twice; called on every rank (a forward is collective under ZeRO-3):
    - b's logits must not move when a's tokens change: a masked-out example adds exactly zero to attention,
      in any dtype, so this holds to float precision even in bf16;
    - the packed logits must match each example run alone, within the rounding of the model's dtype (half
      precision computes the two differently shaped passes with visible rounding differences).
    """
    import torch

    pair = [rows[i] for i in range(min(2, len(rows)))]
    if len(pair) < 2 or any(hasattr(p, "ds_id") for p in model.parameters()):
        return  # ZeRO-3 shards exist only inside the DeepSpeed engine: the check runs unsharded
    first, second = _first_fit(pair, sum(len(f["input_ids"]) for f in pair))[0]  # the packer's order
    vocab = model.get_input_embeddings().num_embeddings
    altered = {"input_ids": [(token + 1) % vocab for token in first["input_ids"]], "labels": first["labels"]}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            logits = [_packed_logits(model, [a, second], device) for a in (first, altered)]
            alone = torch.cat(
                [
                    model(input_ids=torch.tensor([f["input_ids"]], device=device)).logits[0].float()
                    for f in (first, second)
                ]
            )
    finally:
        model.train(was_training)
    scale = max(1.0, alone.abs().max().item())
    start = len(first["input_ids"])
    leak = (logits[0][start:] - logits[1][start:]).abs().max().item()
    if leak > 1e-5 * scale:
        raise UserError(
            f"packing: {type(model).__name__} attends across packed examples (an example's logits "
            f"move by {leak:.3g} when the one packed before it changes); set packing: false for this model"
        )
    dtype = next(model.parameters()).dtype
    rounding = max(tolerance, 8 * torch.finfo(dtype).eps) if dtype.is_floating_point else tolerance
    gap = (logits[0] - alone).abs().max().item()
    if gap > rounding * scale:
        raise UserError(
            f"packing: {type(model).__name__} gives packed examples other logits than alone (differ by "
            f"{gap:.3g}: position ids ignored?); set packing: false for this model"
        )


def _packed_logits(model, pair, device):
    packed = packed_collator(None, sum(len(f["input_ids"]) for f in pair), pad_id=0)(pair)
    return (
        model(
            input_ids=packed["input_ids"].to(device),
            position_ids=packed["position_ids"].to(device),
            use_cache=packed["use_cache"],
        )
        .logits[0]
        .float()
    )
