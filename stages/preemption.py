"""SIGTERM / SIGINT during training (preemptible machines): finish the step, save a checkpoint, stop."""

from __future__ import annotations

import signal

from pipeline.errors import UserError


class Preempted(UserError):
    """Training stopped on a signal after saving a checkpoint; rerunning the command resumes it."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def preemption_callback():
    """A TrainerCallback that turns a signal into 'save now and stop' at the end of the current step."""
    from transformers import TrainerCallback

    class PreemptionCallback(TrainerCallback):
        def __init__(self):
            self.signum = None
            self._previous = {}

        def install(self):
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)

        def uninstall(self):
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)

        def _handle(self, signum, frame):
            self.signum = signum

        def on_step_end(self, args, state, control, **kwargs):
            if self.signum is not None:
                control.should_save = True
                control.should_training_stop = True

        def raise_if_stopped(self, step: int, output_dir) -> None:
            if self.signum is not None:
                name = signal.Signals(self.signum).name
                raise Preempted(f"stopped by {name} at step {step}; checkpoint saved in {output_dir}; "
                                f"rerun the same command to resume", self.signum)

    return PreemptionCallback()
