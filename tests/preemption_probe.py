"""Launched instead of `-m pipeline` by tests/test_distributed_preemption.py: the same CLI, with one rank paused.

Rank FORGETLESS_PAUSE_RANK stops at the end of step FORGETLESS_PAUSE_STEP of stage FORGETLESS_PAUSE_STAGE, writes
its PID to FORGETLESS_PAUSED and waits there until a signal reaches it (the other ranks wait in that step's
preemption check). The test's signal then lands at a known step on a known rank, however fast the machine is.
"""

import os
import sys
import time
from pathlib import Path


def pausing(make_callback):
    """Wrap preemption_callback so that its callback pauses where the environment says."""
    stage, step = os.environ["FORGETLESS_PAUSE_STAGE"], int(os.environ["FORGETLESS_PAUSE_STEP"])
    mine = os.environ.get("RANK", "0") == os.environ["FORGETLESS_PAUSE_RANK"]
    paused = Path(os.environ["FORGETLESS_PAUSED"])

    def make():
        callback = make_callback()
        on_step_end = callback.on_step_end

        def paused_step_end(args, state, control, **kwargs):
            if mine and state.global_step == step and Path(args.output_dir).parent.name == stage:
                paused.with_suffix(".tmp").write_text(str(os.getpid()))
                paused.with_suffix(".tmp").rename(paused)  # the test never reads half a PID
                while callback.signum is None:
                    time.sleep(0.01)
            return on_step_end(args, state, control, **kwargs)

        callback.on_step_end = paused_step_end
        return callback

    return make


if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # not tests/: tests/pipeline would shadow pipeline
    from stages import training

    training.preemption_callback = pausing(training.preemption_callback)  # the name run_trainer calls
    from pipeline.cli import main

    sys.exit(main())
