"""What flows from stage to stage, and what each stage kind declares it consumes and produces.

The hand-off is one object: the model folder, the base model's folder (always there, for a stage whose teacher
or anchor is the original model), every earlier stage's model folder by stage name (for a stage that reads one, as
a merge does), and named adapters, each with a scope that says when it is attached. A stage
kind's config declares its contract, as torchtune's FTRecipeInterface declares what a recipe provides, so a
recipe's chain is checked from the declarations before anything runs (`chain_problems`, called by validate), and
evaluation attaches adapters by their scope, never by which stage made them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from pathlib import Path

ADAPTER_WORDS = {"prompt": "soft prompt", "lora": "LoRA adapter"}  # PEFT method -> what the user calls it


class Scope(str, enum.Enum):
    """When an adapter is attached."""

    TARGET = "target"  # only to train on or score the target task (a ProMoT soft prompt)
    EVERY_SUITE = "every_suite"  # for every suite, general included (an unmerged LoRA fine-tune)
    MERGED = "merged"  # folded into the model's weights: recorded, never attached


@dataclass(frozen=True)
class Adapter:
    """A saved PEFT adapter folder, what method made it, and when it is attached."""

    path: Path
    kind: str = "prompt"  # a key of ADAPTER_WORDS
    scope: Scope = Scope.TARGET
    tasks: tuple[str, ...] = ()  # the target tasks it is attached for (multi-task ProMoT); empty: every target

    def serves(self, task: str | None) -> bool:
        """True when this adapter is the one for target `task` (None: a target of a single-target recipe)."""
        return task is None or not self.tasks or task in self.tasks


@dataclass(frozen=True)
class Handoff:
    """The model a stage starts from, the base model, and the adapters trained so far (by the stage that made each)."""

    model_dir: Path
    base_dir: Path
    adapters: dict[str, Adapter] = field(default_factory=dict)
    models: dict[str, Path] = field(default_factory=dict)  # each earlier stage's output model folder, by stage name

    def after(self, result, name: str | None = None) -> Handoff:
        """The hand-off to the next stage: the result's model (recorded as stage `name`'s, when given), and its
        adapters added to (or replacing) ours."""
        models = {**self.models, name: result.model_dir} if name else self.models
        return replace(self, model_dir=result.model_dir, adapters={**self.adapters, **result.adapters}, models=models)

    def model_named(self, name: str) -> Path:
        """A model a stage reads by name: "base", "input" (the model it starts from), or an earlier stage's."""
        return {"base": self.base_dir, "input": self.model_dir}.get(name) or self.models[name]

    def attached(self, scope: Scope, task: str | None = None) -> Adapter | None:
        """The adapter evaluation attaches for a suite of this scope: the newest of that scope, if any; for a
        target task, the newest that serves it (multi-task ProMoT: each target has its own prompt)."""
        chosen = [a for a in self.adapters.values() if a.scope == scope and a.serves(task)]
        return chosen[-1] if chosen else None

    def weights_are_base(self) -> bool:
        """True while only target-scoped adapters were trained: every other suite scores exactly as the base."""
        same = str(self.model_dir) == str(self.base_dir)  # a hub id is a str, read back from a marker as a Path
        return same and self.attached(Scope.EVERY_SUITE) is None


@dataclass(frozen=True)
class Needs:
    """An adapter a stage needs from an earlier stage of its recipe, named by one of its config fields."""

    name: str
    kinds: tuple[str, ...]
    field: str


@dataclass(frozen=True)
class Makes:
    """An adapter a stage hands on under a name, with its method and scope."""

    name: str
    kind: str
    scope: Scope


@dataclass(frozen=True)
class Reads:
    """An earlier stage's model a stage reads besides its input (a merge's end point), named by a config field."""

    name: str
    field: str


ALWAYS_THERE = ("base", "input")  # models every stage may read by these names: the base's, and its input


@dataclass(frozen=True)
class Contract:
    """What a stage kind consumes and produces: besides the model folder, which every stage reads and returns."""

    consumes: tuple[Needs, ...] = ()
    produces: tuple[Makes, ...] = ()
    reads: tuple[Reads, ...] = ()  # earlier stages' models, by stage name ("base" and "input" need no entry)


def chain_problems(configs: list) -> list[tuple[str, str]]:
    """(field, message) for every broken hand-off in one recipe's stage list: a name used twice, an adapter needed
    but not made by an earlier stage, a model read from a stage that is not an earlier one, or two adapters that
    would have to be attached at once."""
    problems, made, seen = [], {}, set()
    for config in configs:
        contract = config.contract()
        if config.name in seen:
            problems.append(("", f"stage name {config.name!r} used twice"))
        for read in contract.reads:
            if read.name not in seen and read.name not in ALWAYS_THERE:
                earlier = ", ".join(repr(c.name) for c in configs if c.name in seen)  # in recipe order
                problems.append(
                    (
                        f"{config.name}.{read.field}",
                        f"no earlier stage named {read.name!r} in this recipe; expected base, input"
                        + (f" or an earlier stage's name ({earlier})" if earlier else ""),
                    )
                )
        for need in contract.consumes:
            if made.get(need.name, Makes("", "", Scope.MERGED)).kind not in need.kinds:
                words = " or ".join(ADAPTER_WORDS[kind] for kind in need.kinds)
                problems.append(
                    (f"{config.name}.{need.field}", f"needs an earlier stage named {need.name!r} that makes a {words}")
                )
        for makes in contract.produces:
            made[makes.name] = makes
        attached = [m for m in made.values() if m.scope != Scope.MERGED]
        if len({m.scope for m in attached}) > 1 or len([m for m in attached if m.scope == Scope.EVERY_SUITE]) > 1:
            names = ", ".join(f"{m.name} ({m.scope.value})" for m in attached)
            problems.append(
                (
                    config.name,
                    f"would leave adapters of two scopes to attach at once ({names}); "
                    "merge one (scope: merged) or train them in separate recipes",
                )
            )
        seen.add(config.name)
    return problems
