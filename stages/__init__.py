"""Stages: one module per kind, each exposing a typed `Config` (with its `contract()`, stages/handoff.py) and
`run(config, ctx) -> StageResult`. A new kind is one file plus its line here; `pipeline ls` lists them."""

from core.registry import Registry

STAGES = Registry(
    "stage kind",
    {
        "prompt_tune": "stages.prompt_tune",
        "finetune": "stages.finetune",
        "evaluate": "stages.evaluate",
        "joint_tune": "stages.joint_tune",
        "lora_tune": "stages.lora_tune",
        "merge": "stages.merge",
        "osf_tune": "stages.osf_tune",
        "self_distill": "stages.self_distill",
        "sdft": "stages.sdft",
    },
)
