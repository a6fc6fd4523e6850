"""Evaluation suites: named lists of lm-eval tasks, each marked general, target or domain."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import yaml

from core.registry import Registry
from evaluation.domain_scoring import CODE_METRIC, LABEL_METRIC, MATH_METRIC, SHIM_MODULE, write_scoring_shim

EMBEDDED_TASKS_DIR = Path(__file__).resolve().parent / "tasks" / "embedded"
EMBEDDED_GENERAL = ["reverse", "copy", "sort", "add", "count", "fact", "translate", "compare"]
LOCAL_MAX_GEN_TOKS = 256  # user tasks: answers are longer than the embedded tasks' few words


class SuiteKind(str, Enum):
    """What a suite measures: retained general ability, the fine-tuned target, or a domain."""

    GENERAL = "general"
    TARGET = "target"
    DOMAIN = "domain"


@dataclass(frozen=True)
class Suite:
    """A set of lm-eval tasks evaluated together; include_path None means lm-eval's own task index."""

    name: str
    suite_kind: str
    tasks: list[str]
    include_path: str | None = None
    labels: list[str] | None = None  # target answer labels, to measure format leak on other suites
    # task -> group (GROUPS), for a general suite whose tasks measure different things; the report gives each
    # group's mean beside the suite's. None: one group, the suite (every embedded suite).
    groups: dict[str, str] | None = None

    def __post_init__(self):
        if self.suite_kind not in {k.value for k in SuiteKind}:
            raise ValueError(
                f"Suite {self.name!r}: suite_kind must be one of "
                f"{[k.value for k in SuiteKind]}, got {self.suite_kind!r}"
            )
        if not self.tasks:
            raise ValueError(f"Suite {self.name!r}: tasks is empty")
        if self.groups is not None and (set(self.groups) != set(self.tasks) or set(self.groups.values()) - GROUPS):
            raise ValueError(f"Suite {self.name!r}: groups must give each of its tasks one of {sorted(GROUPS)}")


def _embedded(name: str, kind: SuiteKind, tasks: list[str], labels=None) -> Suite:
    return Suite(name, kind.value, [f"embedded_{t}" for t in tasks], str(EMBEDDED_TASKS_DIR), labels)


# Real benchmark slices shipped with forgetless (evaluation/tasks/real, ATTRIBUTION.md there), as lm-eval's
# tasks over local files; "real_general_hub" runs lm-eval's own tasks from the Hugging Face hub. Two groups:
# - knowledge: lm-eval's log-likelihood tasks. They compare the choices' probabilities and never look at what the
#   model would say, so they measure kept knowledge, and a format leak cannot move them.
# - generation: scored on what the model says, as a chat model is used; an answer in the wrong format scores 0.
#   lm-eval's arc_challenge_chat ("The best answer is [letter]" after gen_prefix), the other multiple-choice
#   slices asked the same way (real_*_chat.yaml), WinoGrande answered in words (real_winogrande_answer.yaml) and all
#   541 IFEval prompts. The word answer replaces NQ-open: lm-eval's nq_open needs an exact match, which a chat model
#   answering in sentences never gives (0 for every model), and asked for a short answer after "The answer is",
#   scored by containing a reference answer, SmolLM2-135M-Instruct still answered 0 of 50 (real_nq_open.yaml stays,
#   lm-eval's own task, for the lm-eval CLI).
KNOWLEDGE, GENERATION = "knowledge", "generation"
GROUPS = {KNOWLEDGE, GENERATION}
REAL_TASKS_DIR = Path(__file__).resolve().parent / "tasks" / "real"
REAL_KNOWLEDGE = ["arc_easy", "arc_challenge", "piqa", "hellaswag", "winogrande"]
REAL_GENERATION = [
    "arc_easy_chat",
    "arc_challenge_chat",
    "piqa_chat",
    "hellaswag_chat",
    "winogrande_chat",
    "winogrande_answer",
    "ifeval",
]
REAL_GENERAL = REAL_KNOWLEDGE + REAL_GENERATION
# lm-eval's own tasks of each group (the other chat forms are forgetless's, local only).
HUB_GENERATION = ["arc_challenge_chat", "ifeval"]


def _grouped(tasks: dict[str, list[str]]) -> dict[str, str]:
    return {task: group for group, names in tasks.items() for task in names}


def task_groups() -> dict[str, str]:
    """task -> group over every registered suite that declares groups (results.csv's `group` column)."""
    return {task: group for name in SUITES for task, group in (SUITES[name].groups or {}).items()}


SUITES = Registry(
    "suite",
    {  # the evaluation suites a recipe names (pipeline ls)
        "embedded_general": _embedded("embedded_general", SuiteKind.GENERAL, EMBEDDED_GENERAL),
        "embedded_target": _embedded("embedded_target", SuiteKind.TARGET, ["letter_rule"], ["True", "False"]),
        "embedded_capital_rule": _embedded(
            "embedded_capital_rule", SuiteKind.TARGET, ["capital_rule"], ["True", "False"]
        ),
        "embedded_math": _embedded("embedded_math", SuiteKind.DOMAIN, ["math"]),
        "embedded_code": _embedded("embedded_code", SuiteKind.DOMAIN, ["code"]),
        "embedded_domain": _embedded("embedded_domain", SuiteKind.DOMAIN, ["math", "code"]),
        "real_general": Suite(
            "real_general",
            SuiteKind.GENERAL.value,
            [f"real_{t}" for t in REAL_GENERAL],
            str(REAL_TASKS_DIR),
            groups=_grouped(
                {KNOWLEDGE: [f"real_{t}" for t in REAL_KNOWLEDGE], GENERATION: [f"real_{t}" for t in REAL_GENERATION]}
            ),
        ),
        "real_general_hub": Suite(
            "real_general_hub",
            SuiteKind.GENERAL.value,
            REAL_KNOWLEDGE + HUB_GENERATION,
            None,
            groups=_grouped({KNOWLEDGE: REAL_KNOWLEDGE, GENERATION: HUB_GENERATION}),
        ),
        "real_gsm8k": Suite("real_gsm8k", SuiteKind.DOMAIN.value, ["real_gsm8k"], str(REAL_TASKS_DIR)),
        "real_svamp": Suite("real_svamp", SuiteKind.DOMAIN.value, ["real_svamp"], str(REAL_TASKS_DIR)),
    },
)


def hub_suite(task_names: list[str], kind: str, name: str | None = None) -> Suite:
    """Build a suite of lm-eval's built-in task names (data from the Hugging Face hub)."""
    return Suite(name or "hub:" + ",".join(task_names), kind, list(task_names), None)


class Scorer(str, Enum):
    """How a local task scores a generation: exact text, final math answer, or sandboxed code tests."""

    EXACT = "exact"  # exact_match on the stripped generation
    LABEL = "label"  # label_acc: the generation's first word is the reference label ("True." counts)
    MATH = "math"  # math_acc: GSM8K-style "#### N" (else last number) compared by value
    CODE = "code"  # pass@1: HumanEval rows (prompt/test/entry_point) or whole functions + asserts


# Codex/HumanEval stop sequences: a body ends where the next top-level statement starts. Our
# whole-function format keeps "\ndef" and "\n@" out, since its answer may define helpers first.
HUMANEVAL_STOPS = ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```"]
FUNCTION_STOPS = ["\nclass", "\n#", "\nprint", "\nif", "\n```"]
# lm-eval's GSM8K stop sequences (lm_eval/tasks/gsm8k/gsm8k.yaml, generation_kwargs.until): a right answer
# that runs on into another "Question:" is cut there, not scored on the next question's answer.
GSM8K_STOPS = ["Question:", "</s>", "<|im_end|>"]
# exact_match applies these to the answer and the reference alike: the strip filter alone stripped only the
# answer, and converters write references with the leading space a completion is trained with (" small").
EDGE_WHITESPACE = [r"^\s+", r"\s+$"]
# Answer tokens generated per example when the task does not say (a label is a word, a solution is long).
DEFAULT_ANSWER_TOKENS = {"exact": 64, "label": 8, "math": 256, "code": 512}
_REQUIRED = {
    Scorer.EXACT: ("prompt", "completion"),
    Scorer.LABEL: ("prompt", "completion"),
    Scorer.MATH: ("prompt", "completion"),
    Scorer.CODE: ("prompt", "test", "entry_point"),
}


def local_task_suite(
    name: str,
    jsonl_path: str | Path,
    out_dir: str | Path,
    kind: str,
    labels: list[str] | None = None,
    max_gen_toks: int = LOCAL_MAX_GEN_TOKS,
    scorer: str = "exact",
) -> Suite:
    """Write an lm-eval task YAML for a JSONL file into out_dir and return its Suite; see `Scorer`."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):  # it names the YAML file and the lm-eval task
        raise ValueError(f"local task name {name!r}: use letters, digits, '_', '.', '-' only")
    if scorer not in {s.value for s in Scorer}:
        raise ValueError(f"local task {name!r}: scorer must be one of {[s.value for s in Scorer]}, got {scorer!r}")
    scorer = Scorer(scorer)
    jsonl_path = Path(jsonl_path).resolve()
    rows = _read_jsonl(jsonl_path, _REQUIRED[scorer])
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "task": name,
        "dataset_path": "json",  # datasets' packaged json builder: local files, no hub access
        "dataset_kwargs": {"data_files": {"test": str(jsonl_path)}},
        "output_type": "generate_until",
        "test_split": "test",
        "doc_to_text": "prompt",  # column names, not Jinja templates: no compile per document
        "doc_to_target": "test" if scorer is Scorer.CODE else "completion",
        # lm-eval always adds the tokenizer's eos to `until`, so an empty list means "stop at eos".
        "generation_kwargs": {"until": _stops(scorer, rows), "do_sample": False, "max_gen_toks": max_gen_toks},
        **_scoring(scorer),
        "metadata": {"version": 1.0, "source": str(jsonl_path), "scorer": scorer.value},
    }
    header = f"# Written by forgetless for {jsonl_path.name}. Run: lm_eval --include_path {out_dir} --tasks {name}\n"
    text = header + yaml.safe_dump(config, sort_keys=False)
    if scorer is not Scorer.EXACT:
        # safe_dump cannot write the `!function` tag; lm-eval resolves it next to the YAML, hence the shim.
        write_scoring_shim(out_dir)
        text += f"process_results: !function {SHIM_MODULE}.score_{scorer.value}\n"
    if scorer is Scorer.CODE:  # lm-eval's default filter, then every program run side by side (precheck_code)
        text += (
            "filter_list:\n- name: none\n  filter:\n  - function: take_first\n  - function: custom\n"
            f"    filter_fn: !function {SHIM_MODULE}.precheck_code\n"
        )
    (out_dir / f"{name}.yaml").write_text(text)
    return Suite(name, kind, [name], str(out_dir), labels)


def _stops(scorer: Scorer, rows: list[dict]) -> list[str]:
    if scorer is Scorer.MATH:
        return list(GSM8K_STOPS)
    if scorer is not Scorer.CODE:
        return []
    return HUMANEVAL_STOPS if all("def check(" in row["test"] for row in rows) else FUNCTION_STOPS


def _scoring(scorer: Scorer) -> dict:
    """filter_list and metric_list for a scorer (process_results, a YAML tag, is added by the caller)."""
    strip = [{"name": "strip", "filter": [{"function": "remove_whitespace"}, {"function": "take_first"}]}]
    if scorer is Scorer.EXACT:
        return {
            "filter_list": strip,
            "metric_list": [
                {
                    "metric": "exact_match",
                    "aggregation": "mean",
                    "higher_is_better": True,
                    "ignore_case": False,
                    "ignore_punctuation": False,
                    "regexes_to_ignore": EDGE_WHITESPACE,
                }
            ],
        }
    if scorer in (Scorer.MATH, Scorer.LABEL):
        metric = MATH_METRIC if scorer is Scorer.MATH else LABEL_METRIC
        return {
            "filter_list": strip,
            "metric_list": [{"metric": metric, "aggregation": "mean", "higher_is_better": True}],
        }
    # No strip for code: a HumanEval body starts with its indentation. lm-eval's default filter takes
    # the single generation as is.
    return {"metric_list": [{"metric": CODE_METRIC, "aggregation": "mean", "higher_is_better": True}]}


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    """Read the rows, failing early and naming file and line if one lacks a required field."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such JSONL file")
    rows = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            missing = [field for field in required if field not in row]
            if missing:
                raise ValueError(f"{path}:{lineno}: missing field(s) {missing}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no examples")
    return rows


def runs_generated_code(suite: Suite) -> bool:
    """Whether scoring `suite` runs model-written code: one of its tasks' YAMLs in its folder names score_code."""
    if suite.include_path is None:
        return False
    for path in Path(suite.include_path).glob("*.yaml"):
        text = path.read_text()
        task = re.search(r"^task:\s*(\S+)", text, re.MULTILINE)
        if task and task.group(1) in suite.tasks and "score_code" in text:
            return True
    return False
