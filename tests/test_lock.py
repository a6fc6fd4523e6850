"""The lock pins what the tests ran against: it covers pyproject.toml, and the venv holds exactly it."""

import os

import pytest

from tests import lock


def test_every_declared_requirement_is_locked_inside_its_range():
    pins = lock.locked()
    for requirement in lock.declared():
        name = lock.canonicalize_name(requirement.name)
        assert name in pins, f"{name} is in pyproject.toml but not in the lock: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"lock pins {name}=={pins[name]}, outside pyproject.toml's {requirement}: run make lock"
        )


def test_torch_is_locked_to_its_cpu_build():
    # Any other torch pin pulls several GB of CUDA wheels on a CPU machine.
    assert str(lock.locked()["torch"]) == "2.13.0+cpu"


@pytest.mark.skipif(
    os.environ.get("FORGETLESS_LATEST") == "1",
    reason="make test-latest installs the newest versions on purpose (it prints the drift)",
)
def test_installed_versions_are_the_locked_ones():
    assert lock.drift() == [], "the venv differs from requirements.lock.txt: rerun make setup"


def test_a_line_that_is_not_a_pin_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "requirements.lock.txt"
    bad.write_text("torch==2.13.0+cpu\n    # via forgetless\ntransformers>=5\n")
    monkeypatch.setattr(lock, "LOCK", bad)
    with pytest.raises(ValueError, match=r"requirements.lock.txt:3: not a name==version pin"):
        lock.locked()
