"""The README's way in holds: its recipe for your own model and data validates as printed, the README stays short,
and every docs/ page it links to exists.

The recipe is the first ```yaml block under "## Your own model and data", saved as the README says (my.yaml in the
checkout's root, so its data paths, relative to the recipe file, name the files that ship in recipes/data/)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HEADING = "## Your own model and data"
# The README names a hub model, which this offline machine cannot reach; validate then stops at model.path with one
# line (the hub cannot be reached). So the test swaps in the shipped SmolLM2-135M-Instruct, a named base that needs
# no hub, and validates every other line exactly as printed.
OFFLINE_MODEL = "smollm2-135m-instruct"


def quickstart_yaml() -> str:
    text = README.read_text()
    assert HEADING in text, f"README has no {HEADING!r} section"
    block = re.search(r"^```yaml\n(.*?)^```", text.split(HEADING, 1)[1], flags=re.S | re.M)
    assert block, f"no ```yaml block under {HEADING!r}"
    return block.group(1)


def test_the_quickstart_recipe_validates_as_printed(tmp_path):
    text = quickstart_yaml()
    assert len(text.splitlines()) <= 25, "the quickstart recipe is at most 25 lines"
    recipe = yaml.safe_load(text)
    for field in ("name", "seeds", "model", "target", "evaluation", "recipes"):
        assert field in recipe, f"the quickstart recipe lacks {field}"
    assert set(recipe["recipes"]) >= {"sft", "promot"}
    for key in ("train", "test"):  # the data ships with the project: a user copying the file can validate it
        path = recipe["target"][key]
        assert (ROOT / path).is_file(), f"target.{key}: {path} is not in the checkout"
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / path, tmp_path / path)
    hub_id = recipe["model"]["path"]
    assert text.count(hub_id) == 1
    (tmp_path / "my.yaml").write_text(text.replace(hub_id, OFFLINE_MODEL))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "validate", "my.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: my.yaml:"), done.stdout


def test_the_readme_names_the_commands_and_the_report():
    text = README.read_text()
    name = yaml.safe_load(quickstart_yaml())["name"]
    for line in (
        "pipeline validate my.yaml",
        "pipeline run my.yaml",
        f"runs/{name}/report.md",
        "make promot",
        "make test",
    ):
        assert line in text, f"README does not say {line!r}"


def test_the_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= 210, f"README.md has {lines} lines; move detail to docs/"


def test_every_docs_link_of_the_readme_exists():
    links = re.findall(r"\]\((docs/[^)#\s]*)(?:#[^)\s]*)?\)", README.read_text())
    assert links, "the README links to no docs/ page"
    missing = sorted({link for link in links if not (ROOT / link).is_file()})
    assert not missing, f"README links to missing pages: {missing}"
