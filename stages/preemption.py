"""SIGTERM / SIGINT during training (preemptible machines): finish the step, save a checkpoint, stop.

Launched as several processes, a signal may reach one rank only, or the ranks at different steps. Every rank
stops where any rank caught one, so all save the same checkpoint (a collective under DeepSpeed) and none
waits forever in a step the others never take.
"""

from __future__ import annotations

import signal

from core.errors import UserError


class Preempted(UserError):
    """Training stopped on a signal after saving a checkpoint; rerunning the command resumes it."""

    every_rank = True  # all ranks stop together (max_over_ranks), so rank 0 alone says so

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum
        self.signal = signal.Signals(signum).name


def preemption_callback():
    """A TrainerCallback that turns a signal into 'save now and stop' at the end of the current step."""
    from transformers import TrainerCallback

    from core.ranks import max_over_ranks

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

        def agreed(self) -> int:
            """The signal any rank has caught (0: none): one scalar all-reduce, nothing in a single process.
            Only read here, so a signal that lands during the all-reduce is kept for the next agreement."""
            return max_over_ranks(self.signum or 0)

        def on_step_end(self, args, state, control, **kwargs):
            if self.agreed():
                control.should_save = True
                control.should_training_stop = True

        def raise_if_stopped(self, step: int, output_dir) -> None:
            # Agree once more (the handlers are uninstalled by now): a signal caught after the last step's check
            # stops every rank or none. Being a collective, it also holds every rank here until rank 0 has
            # written the checkpoint.
            signum = self.agreed()
            if signum:
                name = signal.Signals(signum).name
                raise Preempted(
                    f"stopped by {name} at step {step}; checkpoint saved in {output_dir}; "
                    f"rerun the same command to resume",
                    signum,
                )

    return PreemptionCallback()
