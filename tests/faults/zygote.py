"""A process that imports the pipeline once, then runs each command in a fresh fork of itself.

The fault-injection harness starts hundreds of runs; importing torch, transformers, lm-eval and DeepSpeed
again for each would cost more than the runs. Each request is one JSON line on stdin:
{"argv": [...], "cwd": ..., "out": <log file>, "root": <watched folder>, "record": <log>|null, "kill": <point>|null},
answered with one line {"rc": <exit code, or minus the signal that ended it>}. The child is a real process:
a kill point SIGKILLs it, and nothing of it survives into the next request.
"""

import gc
import json
import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # not tests/


def warm() -> None:
    """Import everything a run imports, so that each fork starts at once."""
    import deepspeed  # noqa: F401  (the Trainer imports it at its first use)
    import lm_eval.evaluator  # noqa: F401
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import peft  # noqa: F401
    import transformers.trainer  # noqa: F401

    import pipeline.cli  # noqa: F401
    import pipeline.engine.orchestrator  # noqa: F401
    import pipeline.reports.report  # noqa: F401
    import pipeline.retraining.retrain  # noqa: F401
    import stages.evaluate  # noqa: F401
    import stages.finetune  # noqa: F401
    import stages.prompt_tune  # noqa: F401


def child(request: dict) -> None:
    """In the fork: set up the fault, run the command, exit with its code."""
    from pathlib import Path

    from tests.faults.inject import Injector, install

    os.chdir(request["cwd"])
    fd = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.umask(0o022)
    record = request.get("record")
    install(Injector(Path(request["root"]), Path(record) if record else None, request.get("kill")))
    from pipeline.cli import main

    try:
        code = main(request["argv"])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve() -> None:
    """Answer requests until stdin closes; answers go out on the original stdout, anything printed to stderr."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # libraries print warnings on stdout while importing
    warm()
    gc.collect()
    gc.freeze()  # the imported world is never collected: each child's gc.collect() skips it
    print("ready", file=answers, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        print(json.dumps({"rc": rc}), file=answers, flush=True)


if __name__ == "__main__":
    serve()
