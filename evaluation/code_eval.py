"""Functional correctness of generated code: run each problem's tests on a completion in the sandbox."""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor

from evaluation.sandbox import Judge, Program, SandboxResult, chosen


def build_program(problem: dict, completion: str) -> Program:
    """The untrusted program and its trusted tests, for HumanEval problems or our assert-style examples."""
    for field in ("test", "entry_point"):
        if not problem.get(field):
            raise ValueError(f"problem {problem.get('task_id', '?')}: field '{field}' is missing or empty")
    if "def check(" in problem["test"]:
        # HumanEval: the prompt holds the signature and docstring, the completion only the body. The judge
        # runs the prompt too, for the helpers some tests call, then check(candidate).
        return Program(
            problem["prompt"] + completion + "\n",
            problem["test"],
            problem["entry_point"],
            setup=problem["prompt"],
            check=True,
        )
    # Our examples: the prompt is an instruction, the completion the whole function, the test asserts.
    return Program(completion + "\n", problem["test"], problem["entry_point"])


def check_completion(problem: dict, completion: str, timeout_s: float = 5.0) -> SandboxResult:
    """Run one completion against its problem's tests in the sandbox."""
    with Judge() as judge:
        return judge.run(build_program(problem, completion), timeout_s=timeout_s)


def check_completions(
    problems: list[dict], completions: list[str], timeout_s: float = 5.0, workers: int = 2
) -> list[SandboxResult]:
    """Check many completions, `workers` sandboxed processes at a time; results keep the input order.

    Each worker drives one `Judge`, which starts a fresh runner per program: the same isolation as
    `check_completion`, without a judge start per program.
    """
    if len(problems) != len(completions):
        raise ValueError(f"got {len(problems)} problems but {len(completions)} completions")
    servers: queue.Queue = queue.Queue()
    started = []
    isolation = chosen()  # refuses before any program runs when there is no isolation and none was waived
    try:
        for _ in range(max(1, min(workers, len(problems)))):
            started.append(Judge(isolation))
            servers.put(started[-1])

        def check(pair) -> SandboxResult:
            server = servers.get()
            try:
                return server.run(build_program(*pair), timeout_s=timeout_s)
            finally:
                servers.put(server)

        # Threads are enough to drive the servers: each check runs in a child process, so the threads
        # only wait, and nothing has to be pickled.
        with ThreadPoolExecutor(max_workers=len(started)) as pool:
            return list(pool.map(check, zip(problems, completions)))
    finally:
        for server in started:
            server.close()


def pass_at_1(results: list[SandboxResult]) -> float:
    """Fraction of problems whose single (greedy) completion passed."""
    if not results:
        raise ValueError("pass@1 of no results is undefined")
    return sum(result.passed for result in results) / len(results)
