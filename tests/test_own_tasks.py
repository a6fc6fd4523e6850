"""A user's own lm-eval task YAML runs as the general suite (evaluation.task_dir + general_tasks), as docs/recipes.md (Your own tasks) shows."""

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]

QUIZ_YAML = """task: my_quiz
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
output_type: multiple_choice
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices.text}}}}"
doc_to_target: "{{{{choices.label.index(answerKey)}}}}"
metric_list: [{{metric: acc, aggregation: mean, higher_is_better: true}}]
"""


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


def write_recipe(folder: Path, base) -> Path:
    rows = [
        {"question": f"copy {w}", "choices": {"text": [w, "x"], "label": ["A", "B"]}, "answerKey": "A"}
        for w in ("a", "b", "c")
    ]
    (folder / "my_quiz.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "my_tasks").mkdir()
    (folder / "my_tasks" / "my_quiz.yaml").write_text(QUIZ_YAML.format(data=folder / "my_quiz.jsonl"))
    recipe = folder / "recipe.yaml"
    recipe.write_text(f"""name: own
seeds: [0]
model: {{path: {base}}}
target: {{name: letter_rule, train: "embedded:letter_rule", train_rows: 16, test_rows: 2}}
evaluation:
  task_dir: my_tasks
  general_tasks: [my_quiz]
recipes:
  sft: [{{kind: finetune, steps: 1, batch_size: 4}}]
""")
    return recipe


def test_a_task_yaml_in_task_dir_is_the_general_suite(tiny_base, tmp_path):
    recipe = write_recipe(tmp_path, tiny_base)
    assert main(["run", str(recipe), "--run-dir", str(tmp_path / "run")]) == 0
    frame = pd.read_csv(tmp_path / "run" / "results.csv")
    general = frame[(frame.suite == "general") & (frame.metric == "acc")]
    assert set(general.task) == {"my_quiz"} and (general.n == 3).all()
    assert set(general.stage) == {"base", "finetune"}
    # One step of fine-tuning answers these docs much as the base does: paired with the base's per-example scores,
    # the forgetting's standard error is below the two scores' variances added (about 0.47 here).
    from pipeline.reports.results import read_results, summarise

    assert general[general.stage == "finetune"].paired_stderr.notna().all()
    table = summarise(read_results(tmp_path / "run" / "results.csv")).set_index("stage")
    unpaired = (table.general_se["finetune"] ** 2 + table.general_se["base"] ** 2) ** 0.5
    assert unpaired > 0.1 and table.forgetting_se["finetune"] < unpaired


def test_a_missing_task_dir_or_no_task_names_is_one_line(tiny_base, tmp_path, capsys):
    recipe = write_recipe(tmp_path, tiny_base)
    assert main(["validate", str(recipe), "--set", "evaluation.task_dir=nowhere"]) == 2
    assert "evaluation.task_dir: 'nowhere': no such folder" in capsys.readouterr().err
    assert main(["validate", str(recipe), "--set", "evaluation.general_tasks=[]"]) == 2
    assert "evaluation.task_dir: set general_tasks too" in capsys.readouterr().err
