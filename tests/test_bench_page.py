"""docs/benchmarks.md is rewritten by `make bench`, all but its one part written by hand (what the benchmarks measure
and how to run them, moved there from the README): a run must keep that part as it is."""

import json

from bench import run


def _render(kept):
    saved = {name: run._saved(name) for name in run.BENCHMARKS}
    meta = json.loads((run.RESULTS / "real_model.json").read_text())["meta"]
    return run.render(meta, *(saved[name] for name in run.BENCHMARKS), kept=kept)


def test_the_page_has_its_hand_written_part():
    kept = run.kept_part()
    assert kept[1] == run.KEPT_BEGIN and kept[-1] == run.KEPT_END
    assert any("make bench" in line for line in kept) and any("make gpu-check" in line for line in kept)


def test_a_rendered_page_keeps_the_hand_written_part_as_it_is(tmp_path):
    kept = run.kept_part()
    page = _render(kept)
    assert "\n".join(kept[1:]) in page
    rewritten = tmp_path / "benchmarks.md"
    rewritten.write_text(page)
    assert run.kept_part(rewritten) == kept  # and the next run keeps it again


def test_a_page_without_the_markers_has_no_hand_written_part(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text(_render([]))
    assert run.kept_part(page) == [] and run.kept_part(tmp_path / "missing.md") == []
