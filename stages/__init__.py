"""Stages: one module per kind, each exposing a typed `Config` and `run(config, ctx) -> StageResult`."""

from stages import evaluate, finetune, prompt_tune

STAGES = {
    "prompt_tune": prompt_tune,
    "finetune": finetune,
    "evaluate": evaluate,
}
