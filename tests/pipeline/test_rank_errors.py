"""User errors under a launcher: rank 0 prints what every rank raised; any other rank prints only its own errors."""

import pytest

from core import ranks
from pipeline.cli import main


@pytest.fixture
def rank_1(monkeypatch):
    """This process as rank 1 (of a world of 1, so the CLI has no other rank to wait for)."""
    monkeypatch.setattr(ranks, "launched", lambda: (1, 1))


def test_every_rank_error_is_left_to_rank_0(rank_1, tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2  # every rank looks for the same file
    assert capsys.readouterr().err == ""


def test_rank_own_error_is_printed_with_its_rank(rank_1, tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == f"error: rank 1: {tmp_path}/results.csv: not found (is this a finished run folder?)\n"
    )


def test_single_process_prints_as_before(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing.yaml'}: no such recipe file")


def test_max_over_ranks_is_the_value_itself_in_one_process():
    assert ranks.max_over_ranks(15) == 15 and ranks.max_over_ranks(0) == 0
