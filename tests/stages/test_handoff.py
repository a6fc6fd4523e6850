"""The typed hand-off: adapters by scope, and a recipe's chain checked from each stage kind's declared contract."""

from dataclasses import dataclass
from pathlib import Path

from stages import finetune, prompt_tune
from stages.context import StageResult
from stages.handoff import Adapter, Contract, Handoff, Makes, Scope, chain_problems


@dataclass
class LoraLike:
    """A stage config of a kind that makes a LoRA adapter of a given scope (the contract is all that counts)."""

    name: str
    scope: Scope

    def contract(self):
        return Contract(produces=(Makes(self.name, "lora", self.scope),))


def test_prompt_tune_makes_a_target_prompt_and_finetune_needs_the_one_it_names():
    assert prompt_tune.Config(name="pt").contract().produces == (Makes("pt", "prompt", Scope.TARGET),)
    needs = finetune.Config(prompt_from="pt").contract().consumes
    assert [(n.name, n.kinds, n.field) for n in needs] == [("pt", ("prompt", "lora"), "prompt_from")]
    assert finetune.Config().contract() == Contract()


def test_the_chain_holds_for_promot_and_names_each_broken_hand_off(monkeypatch):
    promot = [prompt_tune.Config(), finetune.Config(prompt_from="prompt_tune")]
    assert chain_problems(promot) == []
    assert chain_problems([finetune.Config(prompt_from="prompt_tune"), prompt_tune.Config()]) == [
        ("finetune.prompt_from", "needs an earlier stage named 'prompt_tune' that makes a soft prompt or LoRA adapter")
    ]
    # ProMoT's stage 2 takes a LoRA adapter too (the paper's ablation); the kind counts, not only the name
    assert chain_problems([LoraLike("prompt_tune", Scope.TARGET), finetune.Config(prompt_from="prompt_tune")]) == []

    @dataclass
    class Other:  # a kind of adapter stage 2 does not take
        name: str = "prompt_tune"

        def contract(self):
            return Contract(produces=(Makes(self.name, "ia3", Scope.TARGET),))

    from stages import handoff

    monkeypatch.setitem(handoff.ADAPTER_WORDS, "ia3", "IA3 adapter")
    assert chain_problems([Other(), finetune.Config(prompt_from="prompt_tune")]) == [
        ("finetune.prompt_from", "needs an earlier stage named 'prompt_tune' that makes a soft prompt or LoRA adapter")
    ]
    assert chain_problems([finetune.Config(), finetune.Config()]) == [("", "stage name 'finetune' used twice")]


def test_two_scopes_to_attach_at_once_are_refused_and_a_merged_one_is_not():
    assert chain_problems([prompt_tune.Config(), LoraLike("lora", Scope.MERGED)]) == []
    (problem,) = chain_problems([prompt_tune.Config(), LoraLike("lora", Scope.EVERY_SUITE)])
    assert problem[0] == "lora" and "prompt_tune (target), lora (every_suite)" in problem[1]


def test_the_newest_adapter_of_a_scope_is_attached_and_the_base_is_always_there(tmp_path):
    base = tmp_path / "base"
    first = Handoff(base, base).after(StageResult(base, {"pt": Adapter(tmp_path / "pt")}))
    assert first.weights_are_base() and first.attached(Scope.TARGET).path == tmp_path / "pt"
    tuned = first.after(StageResult(tmp_path / "ft/model", {"pt": Adapter(tmp_path / "ft/adapter")}))
    assert tuned.base_dir == base and not tuned.weights_are_base()
    assert tuned.attached(Scope.TARGET).path == tmp_path / "ft/adapter" and tuned.attached(Scope.EVERY_SUITE) is None
    lora = first.after(StageResult(base, {"lora": Adapter(tmp_path / "lora", "lora", Scope.EVERY_SUITE)}))
    assert not lora.weights_are_base()  # the general suite sees the LoRA adapter: the base's rows do not apply
    # a hub id read back from a marker is a Path; the base given as a str is the same model
    assert Handoff(Path("org/model"), "org/model").weights_are_base()


def test_a_result_hands_on_its_newest_attachable_adapter():
    result = StageResult(Path("m"), {"a": Adapter(Path("a")), "m": Adapter(Path("x"), "lora", Scope.MERGED)})
    assert result.adapter_dir == Path("a") and StageResult(Path("m")).adapter_dir is None
