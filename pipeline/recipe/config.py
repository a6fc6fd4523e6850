"""The recipe file: typed configuration for a comparison of training recipes on one base model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from core.typed_yaml import Builder, ConfigError, LineDict, load_yaml, unaliased
from data_recipes.catalog import SourceConfig
from data_recipes.mixes import Mix
from data_recipes.stage_data import fold_replay, unknown_sources
from pipeline.recipe.checks import CheckConfig, ReportConfig
from pipeline.recipe.checks import plain as plain_check
from pipeline.recipe.checks import validate as validate_checks
from pipeline.recipe.gate_config import GateConfig
from pipeline.recipe.overrides import parse_set
from pipeline.recipe.paths import resolve_recipe_paths
from pipeline.recipe.sweep import expand_sweeps, sweep_override
from stages.train_config import PLAIN_NAME

EMBEDDED = "embedded"  # the tiny offline base model / the `embedded:<task>` data scheme


@dataclass
class ModelConfig:
    """Which base model every recipe starts from."""

    path: str = field(
        default=EMBEDDED,
        metadata={
            "help": "a named base ('embedded', 'smollm2-135m-instruct': pipeline ls), a local folder or a hub id"
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "run model code from the hub; off unless set"})
    revision: str | None = field(
        default=None,
        metadata={
            "help": (
                "a hub id's branch, tag or commit (None: its default branch), fetched as a snapshot and recorded; "
                "for a hub id only"
            )
        },
    )

    def __post_init__(self):
        if not self.path:
            raise ValueError("model.path: must not be empty")


TARGET_SCORERS = ("auto", "exact", "label", "math", "code")


@dataclass
class TargetConfig:
    """The task we fine-tune on (ProMoT's target task)."""

    name: str = field(default="letter_rule", metadata={"help": "short name used in results"})
    train: str = field(
        default="embedded:letter_rule", metadata={"help": "embedded:<task>, a .jsonl/.parquet/.csv file or a hub id"}
    )
    test: str | None = field(default=None, metadata={"help": "held-out test data; default: the test split of `train`"})
    format: str = field(
        default="auto", metadata={"help": "prompt_completion, alpaca, messages, sharegpt, gsm8k or auto"}
    )
    train_rows: int | None = field(default=None, metadata={"help": "cap on training rows (None: all)"})
    test_rows: int = field(default=200, metadata={"help": "rows of the test split to generate or keep"})
    labels: list[str] = field(default_factory=list, metadata={"help": "answer labels, for the format-leak measure"})
    scorer: str = field(
        default="auto",
        metadata={
            "help": "exact, label, math, code, or auto: math for '#### N' answers, code for rows with test/entry_point, "
            "label when every answer is one of labels, else exact"
        },
    )
    max_answer_tokens: int | None = field(
        default=None,
        metadata={"help": "tokens generated per test answer (None: exact 64, label 8, math 256, code 512)"},
    )
    on_bad_rows: str = field(
        default="error", metadata={"help": "error, or skip: drop rows that do not convert (counted in the manifest)"}
    )
    revision: str | None = field(
        default=None,
        metadata={"help": "a hub dataset's branch, tag or commit for train and test (None: its default branch)"},
    )

    def source(self, split: str = "train") -> SourceConfig:
        """The train or test data as a data source: its file, row cap, format, bad-row rule and hub revision."""
        if split == "train":
            return SourceConfig(
                self.train, self.train_rows, self.format, on_bad_rows=self.on_bad_rows, revision=self.revision
            )
        return SourceConfig(
            self.test, self.test_rows, self.format, "test", on_bad_rows=self.on_bad_rows, revision=self.revision
        )

    def __post_init__(self):
        if not PLAIN_NAME.match(self.name):  # it names files inside the run folder
            raise ValueError(f"target.name: {self.name!r} must be a plain name (letters, digits, _ . -)")
        if self.train_rows is not None and self.train_rows < 1:
            raise ValueError(f"target.train_rows: must be >= 1, got {self.train_rows}")
        if self.scorer not in TARGET_SCORERS:
            raise ValueError(f"target.scorer: must be one of {list(TARGET_SCORERS)}, got {self.scorer!r}")
        if self.max_answer_tokens is not None and self.max_answer_tokens < 1:
            raise ValueError(f"target.max_answer_tokens: must be >= 1, got {self.max_answer_tokens}")
        if self.test_rows < 1:
            raise ValueError(f"target.test_rows: must be >= 1, got {self.test_rows}")
        if self.on_bad_rows not in ("error", "skip"):
            raise ValueError(f"target.on_bad_rows: must be 'error' or 'skip', got {self.on_bad_rows!r}")


@dataclass
class EvaluationConfig:
    """The held-out evaluation run on the base model and after every stage."""

    general_suite: str = field(default="embedded_general", metadata={"help": "a registered suite (pipeline ls)"})
    domain_suites: list[str] = field(
        default_factory=list, metadata={"help": "registered domain suites, e.g. embedded_math"}
    )
    general_tasks: list[str] = field(default_factory=list, metadata={"help": "lm-eval task names; replace the suite"})
    task_dir: str | None = field(
        default=None,
        metadata={
            "help": "a folder of your own lm-eval task YAMLs: general_tasks then names tasks in it (README: Your own tasks)"
        },
    )
    limit: int | None = field(default=100, metadata={"help": "examples per general / domain task (None: all)"})
    target_limit: int | None = field(default=None, metadata={"help": "examples of the target's test set (None: all)"})
    batch_size: int = 64
    chat_template: bool | str = field(
        default="auto",
        metadata={
            "help": "auto (on when the tokenizer has one), true or false: render every suite and the target's chat-format "
            "rows through the tokenizer's chat template (lm-eval's apply_chat_template)"
        },
    )
    unit_metrics: list[str] = field(
        default_factory=list,
        metadata={
            "help": "metrics of your own tasks that lie in [0, 1] and are higher-is-better, besides those forgetless "
            "knows (acc, acc_norm, exact_match, ...); any other is refused before training (README: Your own tasks)"
        },
    )
    unsafe_code_execution: bool = field(
        default=False,
        metadata={
            "help": "run model-written code (code suites, a code target) even where neither bubblewrap nor unshare "
            "isolates it (README: Code evaluation sandbox)"
        },
    )

    def __post_init__(self):
        for name in ("limit", "target_limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"evaluation.{name}: must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ValueError(f"evaluation.batch_size: must be >= 1, got {self.batch_size}")
        if self.chat_template not in (True, False, "auto"):
            raise ValueError(f"evaluation.chat_template: must be auto, true or false, got {self.chat_template!r}")


@dataclass
class RecipeFile:
    """A recipe file: one base model, one target, one evaluation, and named recipes of stages."""

    name: str
    recipes: dict[str, list[dict]]
    seeds: list[int] = field(default_factory=lambda: [0])
    model: ModelConfig = field(default_factory=ModelConfig)
    target: TargetConfig | None = field(default=None, metadata={"help": "the task to fine-tune on (ProMoT)"})
    targets: list[TargetConfig] = field(
        default_factory=list,
        metadata={
            "help": "several target tasks instead of `target` (multi-task ProMoT): each one's name is a data source of "
            "its own, 'target' is all of them, and each is scored with its own prompt (README: Multi-task)"
        },
    )
    data: dict[str, SourceConfig] = field(default_factory=dict, metadata={"help": "named training sources (DMT)"})
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    max_length: int = field(default=128, metadata={"help": "tokens per training example (prompt + answer)"})
    runs_root: str = field(default="runs", metadata={"help": "folder that holds every run folder"})
    gate: GateConfig | None = field(default=None, metadata={"help": "promotion thresholds for `pipeline retrain`"})
    checks: list[CheckConfig] = field(
        default_factory=list,
        metadata={"help": "the report's checks, each a measure of a recipe against a bound (README: Checks)"},
    )
    report: ReportConfig = field(
        default_factory=ReportConfig,
        metadata={
            "help": "what the report compares by name: checks_title, method (the frontier's), compare (strategy deltas)"
        },
    )
    deepspeed: str | None = field(
        default=None,
        metadata={
            "help": "DeepSpeed JSON for every training stage, e.g. configs/deepspeed/zero2.json (README: Scale out)"
        },
    )
    report_to: list[str] = field(
        default_factory=lambda: ["none"],
        metadata={
            "help": "experiment trackers, one run per stage named after its stage id: none, tensorboard, mlflow, wandb "
            "(README: Trackers)"
        },
    )
    threads: int | None = field(
        default=None,
        metadata={"help": "CPU threads for torch (None: the cores this process may use / processes on this machine)"},
    )
    stages: dict = field(default_factory=dict, init=False)  # recipe -> list of typed stage configs
    swept: dict = field(default_factory=dict, init=False)  # swept copy -> {field: value} (pipeline/recipe/sweep.py)

    def __post_init__(self):
        if not PLAIN_NAME.match(self.name):
            raise ValueError(f"name: must be a plain folder name, got {self.name!r}")
        root = Path(self.runs_root)
        if root.is_absolute() or ".." in root.parts:  # a recipe never writes outside the runs folder
            raise ValueError(f"runs_root: must be a relative path inside the working folder, got {self.runs_root!r}")
        if not self.seeds:
            raise ValueError("seeds: must list at least one seed")
        if not self.recipes:
            raise ValueError("recipes: must define at least one recipe")
        if "target" in self.data:
            raise ValueError("data.target: the name 'target' is reserved for the target section")
        if self.target is not None and self.targets:
            raise ValueError("targets: give either target (one task) or targets (several), not both")
        names = [t.name for t in self.targets]
        for i, name in enumerate(names):
            if name in names[:i] or name == "target" or name in self.data:
                raise ValueError(
                    f"targets[{i}].name: {name!r} is already a source name (another target, 'target' "
                    f"or a data section entry); each target's name must be its own"
                )
        if self.max_length < 8:
            raise ValueError(f"max_length: must be >= 8, got {self.max_length}")
        from stages.tracking import TRACKERS

        unknown = [name for name in self.report_to if name not in TRACKERS]
        if unknown:
            raise ValueError(f"report_to: unknown tracker {unknown[0]!r}; one of {', '.join(TRACKERS)}")
        if "none" in self.report_to and len(self.report_to) > 1:
            raise ValueError(
                f"report_to: 'none' with other trackers ({', '.join(self.report_to)}); name one or the other"
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads: must be >= 1, got {self.threads}")


def all_targets(recipe) -> list[TargetConfig]:
    """The recipe's target tasks: its `targets`, or its one `target`, or none."""
    return list(recipe.targets) or ([recipe.target] if recipe.target is not None else [])


def load_recipe(path: str | Path, overrides: list[str] = ()) -> RecipeFile:
    """Load, override and validate a recipe file; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        data = unaliased(load_yaml(path))  # an override through a shared &anchor changes its own path only
    except ConfigError as err:
        raise ConfigError([p if p.startswith(str(path)) else f"{path}: {p}" for p in err.problems]) from None
    for key in [k for k in data if str(k).startswith("x-")]:
        del data[key]  # `x-` keys only hold YAML anchors shared by stages (as in docker-compose)
    builder = Builder(str(path))
    resolve_recipe_paths(data, path.parent)  # before --set: command-line paths stay relative to the working folder
    for item in overrides:
        apply_override(data, item, builder)
    written = list(data.get("recipes") or {}) if isinstance(data.get("recipes"), dict) else []
    swept = {**_swept_as_written(data, builder), **expand_sweeps(data, builder)}
    recipe = builder.build(RecipeFile, data)
    if recipe is not None:
        recipe.swept = swept
        validate_checks(
            recipe.checks,
            data.get("checks"),
            recipe.report,
            data.get("report"),
            set(written) | set(recipe.recipes) | _origins(swept),
            builder,
        )
    raw_recipes = data.get("recipes") if isinstance(data, dict) else None
    if isinstance(raw_recipes, dict) and all(isinstance(v, list) for v in raw_recipes.values()):
        stages = build_stages(raw_recipes, builder, data)  # checked even when other fields failed
        if recipe is not None:
            recipe.stages = stages
    if builder.problems:
        raise ConfigError(builder.problems)
    from core.source_lines import yaml_lines

    recipe.source_path, recipe.source_lines = str(path), yaml_lines(data)  # for locating later problems
    return recipe


def _swept_as_written(data: dict, builder: Builder) -> dict:
    """A run folder's config.yaml records its sweeps, already expanded, under `swept:` (copy -> field -> value): read
    back, so the resolved config loads as the recipe file it resolves."""
    swept = data.pop("swept", None) if isinstance(data, dict) else None
    if swept is None:
        return {}
    if not isinstance(swept, dict) or not all(isinstance(v, dict) for v in swept.values()):
        builder.error(
            "swept",
            getattr(data, "lines", {}).get("swept"),
            "expected {recipe: {field: value}} as a run's "
            "config.yaml writes it (to sweep, use sweep: {RECIPE.FIELD: [values]})",
        )
        return {}
    return {str(name): dict(values) for name, values in swept.items()}


def _origins(swept: dict) -> set[str]:
    """The recipes the swept copies were made from, each confirmed by rebuilding the copy's name from its values."""
    from pipeline.recipe.sweep import is_copy

    candidates = {name.split("@", 1)[0] for name in swept}
    return {origin for origin in candidates if any(is_copy(copy, origin, values) for copy, values in swept.items())}


def build_stages(recipes: dict, builder: Builder, raw_root: dict) -> dict:
    """Turn each recipe's list of stage mappings into typed stage configs, checking the hand-offs."""
    from stages import STAGES

    lines = getattr(recipes, "lines", {})
    written = [k for k in STAGES if getattr(STAGES[k], "IN_RECIPES", True)]  # evaluation is planned, not written
    built = {}
    for recipe_name, items in recipes.items():
        where = lines.get(recipe_name)
        if not items:
            builder.error(f"recipes.{recipe_name}", where, "empty stage list")
            continue
        configs, as_written = [], []  # each built stage, and its mapping as the file wrote it
        for i, item in enumerate(items):
            path = f"recipes.{recipe_name}[{i}]"
            line = getattr(item, "lines", {}).get("kind", where)
            kind = item.get("kind") if isinstance(item, dict) else None
            if kind not in written:
                builder.error(f"{path}.kind", line, f"unknown stage kind {kind!r}; one of {sorted(written)}")
                continue
            body = LineDict({k: v for k, v in item.items() if k != "kind"})  # a --set mapping has no lines
            body.lines = getattr(item, "lines", {})
            folded, problems = fold_replay(body)  # the data layer turns `replay` + `k` into the stage's data mix
            for field_name, problem in problems:
                builder.error(f"{path}.{field_name}", body.lines.get(field_name, line), problem)
            config = builder.build(STAGES[kind].Config, folded, path, line)
            if config is not None and not problems:
                configs.append(config)
                as_written.append(body)
        check_folder(recipe_name, recipes, builder, where)
        if len(configs) == len(items):  # a stage that did not build (reported) would make its hand-offs look missing
            check_handoffs(recipe_name, configs, builder, where)
        check_data_names(recipe_name, list(zip(configs, as_written)), raw_data_names(raw_root), builder, where)
        built[recipe_name] = configs
    return built


def check_folder(recipe_name: str, recipes: dict, builder: Builder, line) -> None:
    """Each recipe gets a folder of its own: two names that make one folder name (`a/b`, `a-b`) are refused."""
    from pipeline.recipe.sweep import folder_name

    folder = folder_name(recipe_name)
    first = next(name for name in recipes if folder_name(name) == folder)
    if first != recipe_name:
        builder.error(f"recipes.{recipe_name}", line, f"its folder name {folder!r} is also {first!r}'s; rename one")


def check_handoffs(recipe_name: str, configs: list, builder: Builder, line) -> None:
    """The recipe's chain holds, from each stage kind's declared contract (stages/handoff.py): unique stage names,
    every adapter a stage needs made by an earlier one, never two scopes to attach at once."""
    from stages.handoff import chain_problems

    for field_path, message in chain_problems(configs):
        builder.error(f"recipes.{recipe_name}" + (f".{field_path}" if field_path else ""), line, message)


def raw_data_names(raw_root: dict) -> set[str]:
    """Source names a stage may draw from: those of the data section, plus 'target' when it is set."""
    names = set(raw_root.get("data") or {}) if isinstance(raw_root.get("data"), dict) else set()
    several = raw_root.get("targets") if isinstance(raw_root.get("targets"), list) else []
    names |= {t["name"] for t in several if isinstance(t, dict) and isinstance(t.get("name"), str)}
    return names | ({"target"} if raw_root.get("target") is not None or several else set())


def check_data_names(recipe_name: str, stages: list[tuple], known: set[str], builder: Builder, line) -> None:
    """Every source a stage trains on is declared: (config, mapping as written) pairs, checked by the data layer."""
    for config, written in stages:
        if getattr(config, "data", None) is None:  # a kind that trains on nothing (a merge) names no source
            continue
        for field_name, problem in unknown_sources(written, known):
            builder.error(f"recipes.{recipe_name}.{config.name}.{field_name}", line, problem)


def apply_override(data: dict, item: str, builder: Builder) -> None:
    """Apply one `--set a.b.c=value` (value parsed as YAML) to the raw recipe data."""
    parsed = parse_set(item, builder, lambda text: f"--set {text}", lambda key, raw: sweep_override(data, key, raw))
    if parsed is None:
        return
    key, value = parsed
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            builder.error(f"--set {key}", None, f"cannot descend into {part!r}")
            return
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        builder.error(f"--set {key}", None, f"cannot set {last!r}")


def resolved_dict(recipe: RecipeFile) -> dict:
    """The fully resolved config as plain data, with every default filled in."""
    data = dataclasses.asdict(recipe)
    if not data["targets"]:  # one target (or none): written as before multi-task targets existed
        del data["targets"]
    data["recipes"] = {name: [stage_dict(c) for c in configs] for name, configs in recipe.stages.items()}
    data.pop("stages")
    data["checks"] = [plain_check(check) for check in recipe.checks]
    data["swept"] = {name: dict(values) for name, values in recipe.swept.items()}
    return data


def stage_dict(config) -> dict:
    """A typed stage config as plain data with its kind first; its data mix as the YAML that reads back to it."""
    body = {}
    omitted = {f.name for f in dataclasses.fields(config) if f.metadata.get("omit_default") and _at_default(config, f)}
    for name, value in dataclasses.asdict(config).items():
        if name in omitted:  # a field added later, at its default: left out, so existing stage keys stay as they were
            continue
        mix = getattr(config, name)
        body.update(mix.stage_fields() if isinstance(mix, Mix) else {name: _plain(value)})
    return {"kind": config.kind, **{k: v for k, v in body.items() if k != "kind"}}


def _at_default(config, f) -> bool:
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return getattr(config, f.name) == default


def _plain(value):
    """Enums and fractions as the plain YAML values a user would write (inside mappings too)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "value"):
        return value.value
    if isinstance(value, Fraction):
        return str(value)
    return value
