"""`pipeline` command line: run, validate, ls, report, retrain, gate. Heavy libraries are imported only when a command needs them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core import ranks
from core.errors import UserError, every_rank

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


def recipe_path(name_or_path: str) -> Path:
    """Accept a path to a recipe file, or the name of a shipped recipe (see `pipeline ls`)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = RECIPES_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    raise UserError(f"{name_or_path}: no such recipe file (and no shipped recipe of that name; see `pipeline ls`)")


def output_folder(value: str, option: str) -> Path:
    """A folder named on the command line that the command writes into.

    It may be anywhere, absolute or relative to the working folder, as any command-line path (unlike a recipe
    file's runs_root, which stays inside the working folder); but not "" (which would silently mean the default),
    not an existing file, and somewhere this user can write: the folder itself, or the nearest existing folder
    above it, in which it will be made.
    """
    if not value.strip():
        default = f" (or leave {option} out for the default)" if option == "--run-dir" else ""
        raise UserError(f"{option}: empty; name a folder{default}")
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {value}: is a file, not a folder")
    if path.is_symlink() and not path.exists():
        raise UserError(f"{option} {value}: is a link to {os.readlink(path)}, which does not exist")
    existing = next(p for p in [path.absolute(), *path.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise UserError(f"{option} {value}: {existing} is a file, so no folder can be made inside it")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "the folder" if existing == path.absolute() else f"{existing}, where it would be made,"
        raise UserError(f"{option} {value}: {what} is not writable by this user (read-only?)")
    return path


def load(args):
    """Load and validate the recipe named on the command line."""
    from pipeline.recipe.config import load_recipe

    path = recipe_path(args.recipe)
    return path, load_recipe(path, args.set or [])


def load_checked(args, trained=None):
    """Load the recipe on every rank and check it on rank 0 alone (it reads the data once and logs its warnings
    once). Its problems are every rank's: each reads the same file and --set, and all get rank 0's verdict.
    The launch is checked for the recipes the command trains: `trained(recipe)`, else --only's, else all."""
    from pipeline.engine.deepspeed_config import check_launch, check_world
    from pipeline.recipe.validate import check_recipe

    try:
        path, recipe = load(args)
    except UserError as err:
        raise every_rank(err) from None
    only = trained(recipe) if trained else getattr(args, "only", None) or ()  # one not trained: not launch-checked
    problems = ranks.from_main(
        lambda: check_recipe(recipe) or [*check_world(recipe, ranks.world_size(), only), *check_launch(recipe)]
    )
    if problems:
        raise every_rank(UserError("\n".join(problems)))
    return path, recipe


def cmd_run(args) -> int:
    """Train and evaluate every recipe in the file; write results.csv and report.md."""
    from pipeline.engine.orchestrator import run_dir_for
    from pipeline.run import run_and_report

    if args.run_dir is not None:
        try:
            output_folder(args.run_dir, "--run-dir")
        except UserError as err:
            raise every_rank(err) from None
    path, recipe = load_checked(args)
    run_dir = run_dir_for(recipe, args.run_dir)
    if args.run_dir is None:  # runs_root/name: made inside the working folder
        try:
            output_folder(str(run_dir), "runs_root")
        except UserError as err:
            raise every_rank(err) from None
    _setup_logging()
    run_and_report(recipe, run_dir, path, only=args.only or [], rerun_changed=args.rerun_changed)
    if ranks.is_main():
        print(f"done: {run_dir}/report.md")
    return 0


def cmd_validate(args) -> int:
    """Check the recipe, its data, model and suites, and its batch split and DeepSpeed config on N processes; train nothing."""
    from pipeline.engine.deepspeed_config import check_world
    from pipeline.recipe.validate import check_recipe

    if args.world_size < 1:
        raise UserError(f"--world-size: must be >= 1 (the number of processes), got {args.world_size}")
    _setup_logging(quiet=True)
    path, recipe = load(args)
    problems = check_recipe(recipe) or check_world(recipe, args.world_size)
    if problems:
        raise UserError("\n".join(problems))
    n_stages = sum(len(s) for s in recipe.stages.values())
    print(
        f"ok: {path}: {len(recipe.stages)} recipes, {n_stages} training stages, seeds {recipe.seeds}, "
        f"{args.world_size} process(es)"
    )
    return 0


def cmd_ls(args) -> int:
    """List base models, shipped recipes, stage kinds, evaluation suites and data formats."""
    from bases import NAMED_BASES
    from data_recipes.formats import FORMATS
    from evaluation.suites import SUITES
    from stages import STAGES
    from stages.losses import LOSSES

    print("base models (model.path):")
    for name, (_, _, about) in NAMED_BASES.items():
        print(f"  {name:<22} {about}")
    print("recipes:")
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        print(f"  {path.stem:<20} {path}")
    print("stages:")
    for kind, module in STAGES.items():
        print(f"  {kind:<20} {(module.__doc__ or '').strip().splitlines()[0]}")
    print("suites:")
    for name, suite in SUITES.items():
        print(f"  {name:<20} {suite.suite_kind:<8} {', '.join(suite.tasks)}")
    print("data formats:")
    for name, convert in FORMATS.items():
        print(f"  {name:<20} {(convert.__doc__ or '').strip().splitlines()[0]}")
    print("losses (a training stage's loss:, with loss_alpha, kl_to and kl_weight):")
    for name, about in LOSSES.items():  # stages/losses.py
        print(f"  {name:<20} {about}")
    if not args.check:
        return 0
    from pipeline.recipe.entries import problems

    found = problems()
    for line in found:
        print(f"FAIL: {line}")
    print(f"checked every stage kind, suite and data format: {'FAIL' if found else 'pass'}")
    return 1 if found else 0


def cmd_report(args) -> int:
    """Rebuild report.md and the plot from a run folder's results.csv."""
    from pipeline.reports.report import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "results.csv").is_file():
        raise UserError(f"{run_dir}/results.csv: not found (is this a finished run folder?)")
    output_folder(args.run_dir, "run folder")  # report.md and report.png are written into it
    print(write_report(run_dir))
    return 0


def cmd_retrain(args) -> int:
    """Retrain on new data; promote the model only if it passes the recipe's gate (exit 1 if refused)."""
    from pipeline.retraining.retrain import export, retrain, summary

    try:
        for value, option in ((args.registry, "--registry"), (args.export, "--export")):
            if value is not None:
                output_folder(value, option)
    except UserError as err:
        raise every_rank(err) from None
    path, recipe = load_checked(args, trained=lambda r: [r.gate.recipe] if r.gate else ())
    _setup_logging()
    outcome = retrain(recipe, path, Path(args.registry))  # the same on every rank: rank 0 decided it
    if ranks.is_main():
        if args.export:
            export(outcome, Path(args.export))
        print(summary(outcome))
    return outcome.exit_code


def cmd_gate(args) -> int:
    """Check a finished run against the gate, versus a registry's accepted run or another run (exit 1 on fail)."""
    from pipeline.retraining import gate as gates

    run_dir = Path(args.run_dir)
    gate = gates.gate_from_run(run_dir, args.set or [])
    stage, scores = gates.run_scores(run_dir, gate.recipe)
    name, reference = gates.load_reference(Path(args.against), gate.recipe)
    unlike = gates.unlike_reference(Path(args.against), run_dir, gate.recipe, stage)  # scored otherwise: not compared
    checks = gates.check_gate(gate, scores, reference, name, unlike)
    print(f"gate: {run_dir} ({gate.recipe}/{stage}) against {name}\n\n{gates.gate_table(checks)}\n")
    failed = [c.gate for c in checks if not c.passed]
    print(f"FAIL: {', '.join(failed)}" if failed else "pass")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree; kept import-light so `--help` is instant."""
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Fine-tune without forgetting: staged ProMoT / DMT recipes, measured after every stage.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in [("run", cmd_run, cmd_run.__doc__), ("validate", cmd_validate, cmd_validate.__doc__)]:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("recipe", help="recipe YAML file, or a shipped recipe name (pipeline ls)")
        p.add_argument(
            "--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. --set seeds=[0] (repeatable)"
        )
        p.set_defaults(func=func)
        if name == "run":
            p.add_argument(
                "--run-dir",
                help="run folder, absolute or relative to the working folder; not an existing "
                "file (default: runs_root/name)",
            )
            p.add_argument(
                "--only", action="append", metavar="RECIPE", help="run only this recipe of the file (repeatable)"
            )
            p.add_argument(
                "--rerun-changed",
                action="store_true",
                help="train again the finished stages whose inputs differ from this config (else refused)",
            )
        else:
            p.add_argument(
                "--world-size",
                type=int,
                default=1,
                metavar="N",
                help="check the batch split and DeepSpeed config for N >= 1 processes (default 1)",
            )
    p = sub.add_parser("retrain", help=cmd_retrain.__doc__, description=cmd_retrain.__doc__)
    p.add_argument("recipe", help="recipe YAML file, or a shipped recipe name (pipeline ls)")
    p.add_argument("--registry", required=True, help="registry folder: runs/, accepted.json, registry.jsonl")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. --set gate.min_target=0.5"
    )
    p.add_argument("--export", metavar="DIR", help="also copy summary.md, report and gate verdict here (CI artifacts)")
    p.set_defaults(func=cmd_retrain)
    p = sub.add_parser("gate", help=cmd_gate.__doc__, description=cmd_gate.__doc__)
    p.add_argument("run_dir", help="a finished run folder")
    p.add_argument(
        "--against", required=True, metavar="DIR", help="a registry folder (its accepted run) or a run folder"
    )
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a gate threshold, e.g. --set max_regression=0.05"
    )
    p.set_defaults(func=cmd_gate)
    p = sub.add_parser("ls", help=cmd_ls.__doc__, description=cmd_ls.__doc__)
    p.add_argument(
        "--check",
        action="store_true",
        help="also build every stage kind, suite and data format once; exit 1 naming any that fails",
    )
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("report", help=cmd_report.__doc__, description=cmd_report.__doc__)
    p.add_argument("run_dir", help="a run folder")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line each on stderr and exit code 2.

    Under a launcher an error every rank raised is printed by rank 0 alone, and the other ranks exit only after it
    has: the launcher stops all ranks as soon as one exits, which could cut rank 0 off before it says anything.
    """
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except UserError as err:  # raised anywhere: config, data loaders, run lock, preemption
        from core.typed_yaml import cut_echoes

        rank, world = ranks.launched()
        if rank == 0 or not err.every_rank:
            lines = [cut_echoes(line) for line in str(err).splitlines()]  # a 10 MB value is not echoed whole
            for line in dict.fromkeys(lines):  # a stage shared by recipes (a YAML anchor) errs once
                print(f"error: {f'rank {rank}: ' if rank else ''}{line}", file=sys.stderr, flush=True)
        if err.every_rank and world > 1:
            if rank != 0 and not ranks.in_group():
                # No process group to wait in (a recipe error comes before one is joined): give rank 0 the time to
                # print. The launcher stops every rank as soon as one exits, and would cut rank 0 off mid-line.
                import time

                time.sleep(5)
            ranks.leave()
        return getattr(err, "exit_code", 2)
    ranks.leave()  # every rank got here: finish together
    return code


def _setup_logging(quiet: bool = False) -> None:
    import logging
    import warnings

    # PEFT asks transformers for `is_gradient_checkpointing` at every adapter load (8 times a ProMoT run);
    # the deprecation is for PEFT to act on, not the user.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

    if quiet:  # validate: only warnings, printed like the errors
        logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", force=True)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("lm-eval", "lm_eval", "datasets", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
