"""The real_general suite: lm-eval's standard prompts and metrics over the shipped benchmark slices, offline."""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
from pathlib import Path

import datasets
import lm_eval.tasks
import nltk
import pytest
from lm_eval.api.task import ConfigurableTask
from lm_eval.tasks._yaml_loader import load_yaml

from evaluation import harness
from evaluation.harness import evaluate_suite, task_manager_for
from evaluation.suites import (
    GENERATION,
    HUB_GENERATION,
    KNOWLEDGE,
    REAL_GENERAL,
    REAL_GENERATION,
    REAL_KNOWLEDGE,
    REAL_TASKS_DIR,
    SUITES,
)
from evaluation.tasks.real import build_slices, ifeval_scoring
from evaluation.tasks.real.ifeval_scoring import PUNKT_ENGLISH, process_results, use_shipped_punkt

REAL = SUITES["real_general"]
SHARED = build_slices.DEFAULT_SOURCE  # <repo>/../shared/data/real, absent in a fresh clone
LM_EVAL_TASKS = Path(lm_eval.tasks.__file__).resolve().parent
STANDARD_YAML = {
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "piqa": "piqa/piqa.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "winogrande": "winogrande/default.yaml",
    "nq_open": "nq_open/nq_open.yaml",
    "ifeval": "ifeval/ifeval.yaml",
}
# What a real_* task sets its own way: the data (files, splits; lm-eval's tags would shadow its own) and
# the metadata (lm-eval's version plus provenance, compared separately).
DATASET_KEYS = {
    "task",
    "tag",
    "dataset_path",
    "dataset_name",
    "dataset_kwargs",
    "custom_dataset",
    "training_split",
    "validation_split",
    "test_split",
    "metadata",
}
FIRST_METRIC = {"nq_open": "exact_match", "ifeval": "prompt_level_strict_acc"}  # else acc
# The letter-answer tasks of the generation group: lm-eval's arc_challenge_chat and the slices asked its way.
CHAT = [t for t in REAL_GENERATION if t.endswith("_chat")]
STANDARD_TASKS = list(STANDARD_YAML)  # real_nq_open stays lm-eval's nq_open, outside the suite (0 for a chat model)


def _slice(name: str) -> str:
    """The shipped data file a task reads: a chat or word-answer task reads its benchmark's slice."""
    return name.removesuffix("_chat").removesuffix("_answer")


def _rows(name: str) -> list[dict]:
    with (build_slices.DATA_DIR / f"{_slice(name)}.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def real_tasks(tmp_path_factory):
    """The suite's tasks as the harness loads them, from a working folder that is not the checkout."""
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("elsewhere"))  # data paths must not depend on the working folder
    try:
        return task_manager_for(REAL).load(list(REAL.tasks))["tasks"]
    finally:
        os.chdir(cwd)


def test_suites_name_the_same_benchmarks_locally_and_on_the_hub():
    assert REAL.tasks == [f"real_{t}" for t in REAL_KNOWLEDGE + REAL_GENERATION]
    assert (REAL.suite_kind, REAL.include_path) == ("general", str(REAL_TASKS_DIR))
    assert REAL.groups == {
        **{f"real_{t}": KNOWLEDGE for t in REAL_KNOWLEDGE},
        **{f"real_{t}": GENERATION for t in REAL_GENERATION},
    }
    hub = SUITES["real_general_hub"]
    assert (hub.tasks, hub.suite_kind, hub.include_path) == (REAL_KNOWLEDGE + HUB_GENERATION, "general", None)
    assert hub.groups == {**{t: KNOWLEDGE for t in REAL_KNOWLEDGE}, **{t: GENERATION for t in HUB_GENERATION}}
    assert set(STANDARD_YAML) == set(REAL_KNOWLEDGE) | {"nq_open", "ifeval"}
    group_file = load_yaml(REAL_TASKS_DIR / "real_general.yaml")  # the lm-eval CLI's group names the same tasks
    assert group_file["task"] == REAL.tasks


def test_every_task_of_the_generation_group_is_scored_on_what_the_model_says(real_tasks):
    for name in REAL_GENERATION:
        assert real_tasks[f"real_{name}"].OUTPUT_TYPE == "generate_until", name
    for name in REAL_KNOWLEDGE:
        assert real_tasks[f"real_{name}"].OUTPUT_TYPE == "multiple_choice", name


def test_every_task_builds_its_requests_from_the_shipped_files(real_tasks):
    assert sorted(real_tasks) == sorted(REAL.tasks)
    for name in REAL_GENERAL:
        task = real_tasks[f"real_{name}"]
        docs = list(task.eval_docs)
        shipped = _rows(name)
        assert len(docs) == len(shipped) == (541 if name == "ifeval" else build_slices.ROWS)
        # The shipped rows, field for field (process_docs may add fields, as hellaswag's does).
        assert [{k: _without_nulls(d[k]) for k in shipped[0]} for d in docs] == shipped
        task.build_all_requests(limit=None)
        multiple_choice = task.OUTPUT_TYPE == "multiple_choice"
        assert len(task.instances) == sum(len(task.doc_to_choice(d)) if multiple_choice else 1 for d in docs)


def _without_nulls(value):
    """A value as written in the JSONL: the json loader gives IFEval's kwargs every key some row has, as None."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@pytest.mark.parametrize("name", STANDARD_TASKS)
def test_config_is_lm_evals_but_for_the_dataset(name):
    ours = load_yaml(REAL_TASKS_DIR / f"real_{name}.yaml", resolve_func=True)
    standard = load_yaml(LM_EVAL_TASKS / STANDARD_YAML[name], resolve_func=True)
    keys = (set(ours) | set(standard)) - DATASET_KEYS
    if name == "hellaswag":  # the dump has no ctx_a/ctx_b: a process_docs of its own (ATTRIBUTION.md)
        keys.discard("process_docs")
        assert ours["process_docs"].__name__ == "process_hellaswag"
    if name == "ifeval":  # 256 new tokens, not 1280: a CPU budget, said in the YAML's metadata
        assert (
            ours["generation_kwargs"].pop("max_gen_toks"),
            standard["generation_kwargs"].pop("max_gen_toks"),
            ours["metadata"]["max_gen_toks"],
        ) == (256, 1280, 256)
    assert {k: _named(ours.get(k)) for k in keys} == {k: _named(standard.get(k)) for k in keys}
    assert ours["metadata"]["version"] == standard["metadata"]["version"]
    assert ours["metric_list"][0]["metric"] == FIRST_METRIC.get(name, "acc")
    assert "tag" not in ours  # lm-eval's tags (ai2_arc, multiple_choice) would run ours instead of its own


def _named(value):
    """Config values comparable across two loads: a function by its module and name."""
    if callable(value):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, list):
        return [_named(v) for v in value]
    if isinstance(value, dict):
        return {k: _named(v) for k, v in value.items()}
    return value


def _hub_rows(name: str) -> list[dict]:
    """The shipped rows in the layout of the hub dataset lm-eval's standard task loads."""
    rows = _rows(name)
    if name != "hellaswag":
        return rows  # already the hub layout
    # An original row whose ctx_b is empty: lm-eval's query is then preprocess(activity_label + ": " + ctx_a).
    hub = []
    for row in rows:
        activity, ctx_a = row["ctx"].split(": ", 1)
        hub.append(
            {
                "activity_label": activity,
                "ctx_a": ctx_a,
                "ctx_b": "",
                "ctx": row["ctx"],
                "endings": row["endings"],
                "label": row["label"],
            }
        )
    return hub


def _standard_task(name: str) -> ConfigurableTask:
    """lm-eval's own task for `name` (its YAML and functions), reading the hub-layout rows offline."""
    config = load_yaml(LM_EVAL_TASKS / STANDARD_YAML[name], resolve_func=True)
    config.pop("tag", None)
    splits = {config.get(k) for k in ("training_split", "validation_split", "test_split")} - {None}
    dataset = (
        datasets.Dataset.from_list(_hub_rows(name))
        if name == "hellaswag"
        else datasets.load_dataset("json", data_files=str(build_slices.DATA_DIR / f"{name}.jsonl"))["train"]
    )
    # Every split lm-eval names holds the rows: only the one it evaluates is read (zero-shot).
    config["custom_dataset"] = lambda **_: datasets.DatasetDict({s: dataset for s in splits})
    return ConfigurableTask(config=config)


def _our_task(name: str) -> ConfigurableTask:
    """A real_* task of the folder that no suite names (real_nq_open: lm-eval's own nq_open, kept for the CLI)."""
    return lm_eval.tasks.TaskManager(include_path=str(REAL_TASKS_DIR), include_defaults=False).load([name])["tasks"][
        name
    ]


def _requests(task, n: int) -> list[tuple]:
    task.build_all_requests(limit=n)
    out = []
    for instance in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
        args = instance.arguments
        if isinstance(args[-1], dict):  # generation: (context, kwargs); max_gen_toks is compared elsewhere
            args = (args[0], {k: v for k, v in args[1].items() if k != "max_gen_toks"})
        out.append((instance.request_type, args))
    return out


@pytest.mark.parametrize("name", STANDARD_TASKS)
def test_prompts_choices_and_targets_are_lm_evals(name, real_tasks):
    """Our task and lm-eval's standard one build the same requests and targets for the same rows."""
    ours = real_tasks[f"real_{name}"] if name != "nq_open" else _our_task("real_nq_open")
    standard = _standard_task(name)
    n = 40
    assert _requests(ours, n) == _requests(standard, n)
    our_docs, standard_docs = list(ours.eval_docs)[:n], list(standard.eval_docs)[:n]
    assert [ours.doc_to_target(d) for d in our_docs] == [standard.doc_to_target(d) for d in standard_docs]
    if ours.OUTPUT_TYPE == "multiple_choice":
        assert [ours.doc_to_choice(d) for d in our_docs] == [standard.doc_to_choice(d) for d in standard_docs]


def test_hellaswag_query_is_the_dumps_ctx_uncapitalized(real_tasks):
    doc = real_tasks["real_hellaswag"].eval_docs[0]
    # lm-eval's own process_docs on the original row (ctx_b "he") gives "... roof. He"; the dump lost ctx_b.
    assert doc["query"] == "Roof shingle removal: A man is sitting on a roof. he"
    assert all(d["query"] == d["ctx"] for d in real_tasks["real_hellaswag"].eval_docs)


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} (the real benchmark files) is not here")
def test_shipped_slices_are_build_slices_output():
    for name in build_slices.SLICES:
        shipped = (build_slices.DATA_DIR / f"{name}.jsonl").read_text(encoding="utf-8")
        assert shipped == build_slices.render_slice(name, SHARED), f"{name}: rerun build_slices"


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} (the real benchmark files) is not here")
def test_winogrande_rebuilds_llm_foundrys_contexts_and_continuations(real_tasks):
    """lm-eval's winogrande functions on the converted rows give back llm-foundry's scored strings."""
    with (SHARED / build_slices.SLICES["winogrande"][0]).open(encoding="utf-8") as fh:
        source = [json.loads(line) for line in fh]
    lines = build_slices.chosen_lines("winogrande", len(source))
    task = real_tasks["real_winogrande"]
    for doc, row in zip(task.eval_docs, (source[i] for i in lines), strict=True):
        assert task.doc_to_choice(doc) == row["context_options"]
        assert task.doc_to_target(doc) == row["continuation"]
        assert task.doc_to_text(doc) == row["gold"]  # winogrande's "text" is the gold option's index


def _ifeval(instruction: str, kwargs: dict, response: str) -> dict:
    doc = {"key": 0, "prompt": "p", "instruction_id_list": [instruction], "kwargs": [kwargs]}
    return process_results(doc, [response])


def test_ifeval_scores_offline_with_lm_evals_process_results(real_tasks):
    assert process_results.__module__ == "lm_eval.tasks.ifeval.utils"
    assert real_tasks["real_ifeval"].config.process_results is process_results
    assert _ifeval("punctuation:no_comma", {}, "No commas here at all.")["prompt_level_strict_acc"] is True
    broken = _ifeval("punctuation:no_comma", {}, "Well, a comma.")
    assert (broken["prompt_level_strict_acc"], broken["inst_level_strict_acc"]) == (False, [False])
    # A loaded doc's kwargs carry None for other instructions' keys; lm-eval drops them.
    doc = next(d for d in real_tasks["real_ifeval"].eval_docs if "punctuation:no_comma" in d["instruction_id_list"])
    scores = process_results(doc, ["Text"])
    assert list(scores) == [
        "prompt_level_strict_acc",
        "inst_level_strict_acc",
        "prompt_level_loose_acc",
        "inst_level_loose_acc",
    ]
    assert len(scores["inst_level_strict_acc"]) == len(doc["instruction_id_list"])


def test_ifeval_punkt_instructions_use_the_shipped_english_model():
    # Imported after ifeval_scoring (above), as the YAML does: lm-eval's module would try a download first.
    from lm_eval.tasks.ifeval import instructions_util

    found = Path(str(nltk.data.find(PUNKT_ENGLISH.as_posix() + "/")))
    assert found.parents[2] in {
        ifeval_scoring.NLTK_DATA,
        Path.home() / ".cache" / "forgetless" / "nltk_data",
        Path(os.environ.get("FORGETLESS_CACHE", "/nonexistent")) / "nltk_data",
    }
    # The English model knows "Mr." and "p.m." are abbreviations: two sentences, not four.
    text = "Mr. Smith went to Washington. He arrived at 5 p.m. on Friday."
    assert instructions_util.count_sentences(text) == 2
    sentences = "length_constraints:number_sentences"
    assert _ifeval(sentences, {"num_sentences": 3, "relation": "less than"}, text)["prompt_level_strict_acc"]
    assert not _ifeval(sentences, {"num_sentences": 3, "relation": "at least"}, text)["prompt_level_strict_acc"]
    capitals = "change_case:capital_word_frequency"
    rule = {"capital_frequency": 2, "capital_relation": "at least"}
    assert _ifeval(capitals, rule, "The NASA and ESA teams met.")["prompt_level_strict_acc"]  # word_tokenize
    assert not _ifeval(capitals, rule, "The Nasa and Esa teams met.")["prompt_level_strict_acc"]


def test_a_group_writable_punkt_folder_is_copied_private(tmp_path, monkeypatch):
    """nltk refuses data another account could write to (a checkout under umask 002): a private copy is used."""
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    shipped = tmp_path / "checkout" / "nltk_data"
    shutil.copytree(ifeval_scoring.NLTK_DATA, shipped)
    for folder, _, files in os.walk(shipped):
        os.chmod(folder, 0o775)
        for f in files:
            os.chmod(os.path.join(folder, f), 0o664)
    monkeypatch.setenv("FORGETLESS_CACHE", str(tmp_path / "cache"))
    used = use_shipped_punkt(shipped)
    assert used == tmp_path / "cache" / "nltk_data"
    assert nltk.data.path[0] == str(used) and str(shipped) not in nltk.data.path
    assert nltk.tokenize.PunktTokenizer("english").tokenize("Dr. No left. He won.") == ["Dr. No left.", "He won."]
    with pytest.raises(RuntimeError, match="number_sentences"):  # nothing to load: loud, never a silent 0
        use_shipped_punkt(tmp_path / "missing")


def test_evaluate_suite_end_to_end_on_a_tiny_model(tiny_llama, tokenizer, monkeypatch):
    # A few new tokens keep IFEval's and NQ-open's generation short; the scoring path is the real one.
    cap = {"max_gen_toks": 4}
    monkeypatch.setattr(harness, "simple_evaluate", functools.partial(harness.simple_evaluate, gen_kwargs=cap))
    results = evaluate_suite(tiny_llama(seed=5), tokenizer, REAL, limit=2, batch_size=8)
    assert [r.task for r in results] == REAL.tasks
    assert all(r.n == 2 and r.suite_kind == "general" and 0.0 <= r.score <= 1.0 for r in results)
    metrics = {r.task: (r.metric, r.filter) for r in results}
    assert {metrics[f"real_{t}"] for t in CHAT} == {("exact_match", "remove_whitespace")}
    assert metrics["real_winogrande_answer"] == ("contains_answer", "remove_whitespace")
    assert metrics["real_ifeval"] == ("prompt_level_strict_acc", "none")
    assert all(r.per_example is not None and len(r.per_example) == 2 for r in results)  # flips need them
    assert {metrics[f"real_{t}"] for t in ("arc_easy", "arc_challenge", "piqa", "hellaswag", "winogrande")} == {
        ("acc", "none")
    }


# ----- the generation group: lm-eval's arc_challenge_chat, the other slices asked its way, IFEval

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if not (loop.last and m['role'] == 'assistant') %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_arc_challenge_chat_is_lm_evals_but_for_the_dataset_and_max_gen_toks(real_tasks):
    ours = load_yaml(REAL_TASKS_DIR / "real_arc_challenge_chat.yaml", resolve_func=True)
    standard = load_yaml(LM_EVAL_TASKS / "arc" / "arc_challenge_chat.yaml", resolve_func=True)
    assert (
        ours["generation_kwargs"].pop("max_gen_toks"),
        standard["generation_kwargs"].pop("max_gen_toks"),
        ours["metadata"]["max_gen_toks"],
    ) == (5, 100, 5)
    keys = (set(ours) | set(standard)) - DATASET_KEYS - {"fewshot_split"}  # zero-shot: no fewshot split shipped
    assert {k: ours.get(k) for k in keys} == {k: standard.get(k) for k in keys}
    # The same requests as lm-eval's own task on the same rows.
    config = {
        **standard,
        "custom_dataset": lambda **_: datasets.DatasetDict(
            {s: datasets.Dataset.from_list(_rows("arc_challenge")) for s in ("train", "validation", "test")}
        ),
    }
    config.pop("tag", None)
    assert _requests(real_tasks["real_arc_challenge_chat"], 40) == _requests(ConfigurableTask(config=config), 40)


def test_every_letter_task_shares_arc_challenge_chats_prefix_stops_filter_and_metric(real_tasks):
    reference = real_tasks["real_arc_challenge_chat"].config
    for name in CHAT:
        config = real_tasks[f"real_{name}"].config
        assert (config.gen_prefix, config.generation_kwargs, config.filter_list, config.metric_list) == (
            reference.gen_prefix,
            reference.generation_kwargs,
            reference.filter_list,
            reference.metric_list,
        ), name
        assert config.generation_kwargs["max_gen_toks"] == 5


@pytest.fixture(scope="module")
def chat_lm(tiny_llama, tokenizer):
    """lm-eval's HFLM around a tiny model whose tokenizer renders a ChatML template, as SmolLM2's does."""
    chat_tokenizer = copy.deepcopy(tokenizer)
    chat_tokenizer.chat_template = CHATML
    return harness.make_lm(tiny_llama(seed=1), chat_tokenizer, batch_size=4)


@pytest.mark.parametrize("name", REAL_GENERATION)
def test_the_chat_template_is_applied_once_and_the_answer_starts_with_the_prefix(name, real_tasks, chat_lm):
    task = real_tasks[f"real_{name}"]
    task.build_all_requests(limit=3, apply_chat_template=True, chat_template=chat_lm.apply_chat_template)
    prefix = task.config.gen_prefix or ""
    assert len(task.instances) == 3
    for instance in task.instances:
        context = instance.args[0]
        assert context.count("<|im_start|>user\n") == 1 and context.count("<|im_start|>assistant\n") == 1, context
        assert context.count("<|im_start|>") == 2  # no second rendering, no system turn of lm-eval's own
        assert context.endswith("<|im_start|>assistant\n" + prefix), context[-80:]
    if name in CHAT:
        assert prefix == "The best answer is"


def _scores(task, doc_ids: list[int], responses: list[str]) -> list[float]:
    """The task's primary metric for each response (the text generated after the prefix), through its filters."""
    task.build_all_requests(limit=max(doc_ids) + 1)
    by_doc = {instance.doc_id: instance for instance in task.instances}
    metric = task.config.metric_list[0]["metric"]
    out = []
    for doc_id, response in zip(doc_ids, responses):
        instance = by_doc[doc_id]
        instance.resps = [response]
        instance.filtered_resps = {}
        for ensemble in task._filters:
            ensemble.apply([instance])
        [filtered] = instance.filtered_resps.values()
        out.append(float(task.process_results(instance.doc, [filtered])[metric]))
    return out


@pytest.mark.parametrize("name", CHAT)
def test_a_right_letter_after_the_prefix_scores_1_and_another_format_0(name, real_tasks):
    task = real_tasks[f"real_{name}"]
    docs = list(task.eval_docs)[:3]
    letters = [task.doc_to_target(d) for d in docs]
    assert all(len(letter) == 1 and letter in "ABCD" for letter in letters)
    wrong = [
        "ABCD"[("ABCD".index(letter) + 1) % (2 if name in ("piqa_chat", "winogrande_chat") else 4)]
        for letter in letters
    ]
    # what follows "The best answer is" (a stop sequence, ".", ends the generation before it reaches the scorer)
    assert _scores(task, [0, 1, 2], [f" {letter}" for letter in letters]) == [1.0, 1.0, 1.0]
    assert _scores(task, [0, 1, 2], [f" {letters[0].lower()}", f"{letters[1]}) ", f" {letters[2]}\n"]) == [1.0] * 3
    assert _scores(task, [0, 1, 2], [f" {w}" for w in wrong]) == [0.0, 0.0, 0.0]
    assert _scores(task, [0, 1, 2], [" yes", " no", " True"]) == [0.0, 0.0, 0.0]  # a leaked label format
    assert _scores(task, [0], [f" option {letters[0]}"]) == [0.0]  # anything but the letter


def test_winogrande_answer_counts_the_right_option_in_words_and_no_other_format(real_tasks):
    task = real_tasks["real_winogrande_answer"]
    doc = task.eval_docs[0]
    assert (doc["option1"], doc["option2"], doc["answer"], task.doc_to_target(doc)) == ("Sarah", "Maria", "1", "Sarah")
    assert task.config.gen_prefix == "The answer is"
    right = [" Sarah", ': "Sarah"', " sarah", " the name Sarah"]
    assert _scores(task, [0] * len(right), right) == [1.0] * len(right)
    wrong = [" Maria", " yes", " no", " A", " Sarah or Maria", " Sarahs"]
    assert _scores(task, [0] * len(wrong), wrong) == [0.0] * len(wrong)
    from evaluation.tasks.real.utils import names, normalize_answer, score_winogrande_answer

    assert normalize_answer("The  U.S. Army!") == "us army"
    assert names("it was the U.S. Army", "US Army") and not names("USA", "US Army") and not names("x", "")
    nested = {"option1": "the cat", "option2": "the big cat", "answer": "2"}  # the other option inside the right one
    assert score_winogrande_answer(nested, ["the big cat"])["contains_answer"] == 1.0
    assert score_winogrande_answer(nested, ["the cat"])["contains_answer"] == 0.0


def test_ifeval_ships_all_541_prompts(real_tasks):
    docs = list(real_tasks["real_ifeval"].eval_docs)
    assert len(docs) == 541 and len({d["key"] for d in docs}) == 541
