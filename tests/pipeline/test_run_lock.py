"""The run lock: an OS lock held for the run's lifetime; a live holder refuses, a leftover file never blocks."""

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.engine.run_lock import RunLock, RunLocked

ROOT = Path(__file__).resolve().parents[2]
HOLD = (
    "import sys, time; from pipeline.engine.run_lock import RunLock\n"
    "with RunLock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)\n"
)
RACE_ROUNDS = 300  # the figure: 32 of 300 rounds had both processes holding the old lock


def hold(run_dir):
    """A separate process holding the run lock of `run_dir` (until killed)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_live_holder_refuses_and_a_killed_holders_file_is_taken_over(tmp_path):
    holder = hold(tmp_path)
    try:
        with pytest.raises(RunLocked, match=f"in use by process {holder.pid}; wait for it or stop it") as refused:
            with RunLock(tmp_path):
                pass
        assert len(str(refused.value).splitlines()) == 1
    finally:
        holder.kill()  # SIGKILL: no cleanup ran, its file stays behind
        holder.wait()
    assert json.loads((tmp_path / "run.lock").read_text())["pid"] == holder.pid
    with RunLock(tmp_path):  # the kernel dropped the dead holder's lock: the leftover file is just a file
        assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / "run.lock").exists()


@pytest.mark.parametrize("who", ["init", "parent"])
def test_lock_file_naming_a_live_unrelated_process_does_not_block(who, tmp_path):
    # After a container restart PIDs start low again: a killed job's run.lock can name pid 1 or any live process.
    pid = 1 if who == "init" else os.getppid()
    (tmp_path / "run.lock").write_text(str(pid))
    with RunLock(tmp_path):
        assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / "run.lock").exists()


def test_second_holder_in_the_same_process_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLocked, match=f"in use by process {os.getpid()};"):
            with RunLock(tmp_path):
                pass
        assert (tmp_path / "run.lock").exists()  # the refused one left the holder's file alone
    with RunLock(tmp_path):  # released on exit
        pass


def _contend(run_dir, start, holding):
    """One racer: take the lock as soon as both are ready; exit 0 holding it (until both have tried), 3 refused."""
    start.wait(timeout=30)
    try:
        with RunLock(run_dir):
            holding.wait(timeout=30)
    except RunLocked:
        holding.wait(timeout=30)
        sys.exit(3)


def test_stale_lock_is_taken_by_exactly_one_of_two_racing_processes(tmp_path):
    context = multiprocessing.get_context("fork")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid whose process is gone: the old lock's takeover case
    both, neither = 0, 0
    for _ in range(RACE_ROUNDS):
        (tmp_path / "run.lock").write_text(str(dead.pid))  # as a job killed by SIGKILL or OOM leaves it
        start, holding = context.Barrier(2), context.Barrier(2)
        racers = [context.Process(target=_contend, args=(tmp_path, start, holding)) for _ in range(2)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=60)
        codes = sorted(racer.exitcode for racer in racers)
        assert set(codes) <= {0, 3}, codes  # no racer crashed or hung
        both += codes == [0, 0]
        neither += codes == [3, 3]
    assert (both, neither) == (0, 0), f"of {RACE_ROUNDS} rounds: {both} with two holders, {neither} with none"


def _churn(run_dir, start, inside, most, attempts):
    """Take and release the lock over and over, counting how many processes are inside at once."""
    start.wait(timeout=30)
    for _ in range(attempts):
        try:
            with RunLock(run_dir):
                with inside.get_lock():
                    inside.value += 1
                    most.value = max(most.value, inside.value)
                with inside.get_lock():
                    inside.value -= 1
        except RunLocked:
            pass


def test_lock_taken_and_released_in_a_loop_never_has_two_holders(tmp_path):
    # Every release deletes the file while others open, lock and check it: the deleted-file race, for real.
    context = multiprocessing.get_context("fork")
    start, inside, most = context.Barrier(3), context.Value("i", 0), context.Value("i", 0)
    workers = [context.Process(target=_churn, args=(tmp_path, start, inside, most, 300)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert most.value == 1
    assert not (tmp_path / "run.lock").exists()


def test_file_deleted_between_open_and_lock_is_not_held(tmp_path, monkeypatch):
    # The holder deletes run.lock on release; a job that opened the file just before can lock the deleted file
    # while a third job creates and locks a new one. The lock counts only on the file that is at the path.
    import pipeline.engine.run_lock as module

    path = tmp_path / "run.lock"
    path.write_text("")
    real_open, opened = os.open, []

    def open_then_released(name, *args, **kwargs):
        fd = real_open(name, *args, **kwargs)
        if Path(name) == path and not opened:
            os.unlink(path)  # its holder released it right after we opened it
        opened.append(name)
        return fd

    monkeypatch.setattr(module.os, "open", open_then_released)
    with RunLock(tmp_path):
        monkeypatch.undo()
        assert json.loads(path.read_text())["pid"] == os.getpid()  # the file at the path is the one held
        with pytest.raises(RunLocked, match="in use by process"):  # and the next job is refused
            with RunLock(tmp_path):
                pass
    assert not path.exists()
