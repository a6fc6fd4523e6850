"""A process that waits for another one's base-model build says what it waits for."""

import fcntl
import threading

from embedded import model


def test_waiting_for_another_build_is_announced(tmp_path, capfd):
    spec = model.TEST_SPEC
    name = f"embedded-base-{model.spec_hash(spec)}"
    with open(tmp_path / f".{name}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # "another process" is building
        waiter = threading.Thread(target=model.ensure_base_model, args=(spec, tmp_path))
        waiter.start()
        waiter.join(timeout=2)
        assert waiter.is_alive()  # it waits...
        (tmp_path / name).mkdir()
        (tmp_path / name / model.MANIFEST).write_text("{}")  # ...the build finishes and the lock goes
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert "waiting for another process building the embedded base model" in capfd.readouterr().err
