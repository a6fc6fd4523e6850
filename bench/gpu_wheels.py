"""Prepare, on a machine with PyPI, the wheel folder that `make gpu-check` installs on a lent GPU machine with no
network (`make gpu-wheels`; docs/benchmarks.md).

The GPU machine has its own python3 (3.12) with a CUDA torch and many packages, but not the lock's: no datasets,
lm-eval or deepspeed, transformers 5.17 where the lock pins 5.24. This walks the project's runtime requirements
through the installed metadata of this venv (= requirements.lock.txt's versions) for Python 3.12 on Linux, torch
left out (the machine's CUDA build stays), and for each package decides:

- pure Python: carried at the locked version, in front of the machine's copy if it has one (the tested versions),
  except the few in MACHINE_KEEPS (large, and the machine's torch already brings them);
- compiled, and the machine has it: the machine's copy is used (a wheel built for its Python);
- compiled, and the machine lacks it: carried, the locked version's cp312 manylinux wheel.

Each wheel is fetched with `pip download --no-deps` of the exact locked version; a project with no wheel on PyPI
(an sdist only: deepspeed, sqlitedict, ...) is built here into a wheel with `pip wheel --no-deps` (DS_BUILD_OPS=0:
DeepSpeed as pure Python, nothing compiled). MANIFEST.md and manifest.json beside the wheels say what is there and
why, and what is used from the machine. The folder must stay under LIMIT_MIB (the device tool carries at most
64 MiB, working tree included).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / ".gpu-wheels"
LIMIT_MIB = 60
MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
}
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_12_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
]
NOT_WALKED = {
    "torch": "the machine's own CUDA build (2.11, CUDA 13) is used",
    "gguf": "only reads SmolLM2's GGUF file; the GPU check trains the embedded base and a random Llama",
    "matplotlib": "the machine has it (compiled); the report's figures use it",
}
MACHINE_KEEPS = {
    "sympy": "large; the machine's torch brings its own",
    "mpmath": "sympy's; the machine's torch brings it",
    "setuptools": "a build tool the machine has",
}
# The GPU machine's python3 packages (the device tool's KINDS.md, as read on 2026-11-17), versions where known.
MACHINE = set(
    """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers
flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx humanize huggingface-hub
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py
markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp""".split()
)
MACHINE_VERSIONS = {
    "accelerate": "1.15.0",
    "huggingface-hub": "1.33.0",
    "numpy": "2.5.2",
    "safetensors": "0.8.0",
    "tokenizers": "0.23.2",
    "transformers": "5.17.0",
}


def closure() -> dict:
    """name -> {version, pure, needed_by} for the project's runtime requirements on Python 3.12 Linux, read from
    this venv's installed metadata (the lock's versions)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    dists = {canonicalize_name(d.metadata["Name"]): d for d in md.distributions()}
    found: dict = {}

    def wanted(req, extras) -> bool:
        return req.marker is None or any(req.marker.evaluate({**MARKERS, "extra": e}) for e in ("", *extras))

    def walk(name: str, extras: tuple, parent: str):
        key = canonicalize_name(name)
        if key in NOT_WALKED:
            return
        if key not in dists:
            raise SystemExit(f"gpu-wheels: {key} (needed by {parent}) is not installed in this venv; run make setup")
        entry = found.get(key)
        if entry is not None and set(extras) <= entry["extras"]:
            entry["needed_by"].add(parent)
            return
        dist = dists[key]
        if entry is None:
            entry = found[key] = {
                "version": dist.version,
                "extras": set(),
                "needed_by": set(),
                "pure": "Root-Is-Purelib: true" in (dist.read_text("WHEEL") or ""),
            }
        entry["extras"] |= set(extras)
        entry["needed_by"].add(parent)
        for text in dist.requires or []:
            req = Requirement(text)
            if wanted(req, tuple(entry["extras"])):
                walk(req.name, tuple(req.extras), key)

    for text in dists["forgetless"].requires or []:
        req = Requirement(text)
        if wanted(req, ()):
            walk(req.name, tuple(req.extras), "forgetless")
    return found


def plan(found: dict) -> dict:
    """Each package's decision: carried (why) or used from the machine (why)."""
    out = {}
    for name, entry in sorted(found.items()):
        there = MACHINE_VERSIONS.get(name, "present" if name in MACHINE else None)
        if entry["pure"] and name in MACHINE_KEEPS and there:
            carry, why = False, MACHINE_KEEPS[name]
        elif entry["pure"]:
            carry = True
            why = (
                "pure Python, missing there"
                if there is None
                else f"pure Python; the lock's version in front of the machine's ({there})"
            )
        elif there:
            carry, why = False, f"compiled; the machine's copy ({there}) is used"
        else:
            carry, why = True, "compiled, missing there: the locked version's cp312 wheel"
        out[name] = {
            "version": entry["version"],
            "pure": entry["pure"],
            "carried": carry,
            "why": why,
            "machine": there,
            "needed_by": sorted(entry["needed_by"]),
        }
    return out


def download(name: str, version: str, dest: Path) -> str:
    """The wheel of name==version into dest: PyPI's wheel for CPython 3.12 manylinux (a pure one matches too), else
    one built here from the sdist. Returns how it was got."""
    spec = f"{name}=={version}"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    done = subprocess.run(
        [
            *pip,
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            "--abi",
            "cp312",
            "--abi",
            "abi3",
            "--abi",
            "none",
            *platforms,
            "-d",
            str(dest),
            spec,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode == 0:
        return "PyPI wheel"
    env = {**os.environ, "DS_BUILD_OPS": "0"}
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), spec],
        capture_output=True,
        text=True,
        env=env,
    )
    if built.returncode != 0:
        raise SystemExit(
            f"gpu-wheels: {spec}: no wheel for Python 3.12 and no build from the sdist:\n"
            f"{done.stderr[-1500:]}\n{built.stderr[-1500:]}"
        )
    return "built here from the PyPI sdist (pip wheel --no-deps)"


def render(decisions: dict, wheels: dict, total: int) -> str:
    carried = {n: d for n, d in decisions.items() if d["carried"]}
    kept = {n: d for n, d in decisions.items() if not d["carried"]}
    lines = [
        "# Wheels for `make gpu-check` (written by `make gpu-wheels`; not in git)",
        "",
        f"{len(carried)} wheels, {total / 2**20:.1f} MiB (limit {LIMIT_MIB} MiB): the lock's versions "
        "(requirements.lock.txt) of the project's runtime requirements, for the GPU machine's python3 (3.12, "
        "Linux x86-64). `make gpu-check` installs them with `pip install --no-index --no-deps --target` into a "
        "folder put first on PYTHONPATH, over the machine's own CUDA torch.",
        "",
        "Not walked: " + "; ".join(f"{n} ({why})" for n, why in NOT_WALKED.items()) + ".",
        "",
        "## Carried",
        "",
        "| package | version | wheel | MiB | why | needed by |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in carried.items():
        w = wheels[name]
        lines.append(
            f"| {name} | {d['version']} | `{w['file']}` ({w['how']}) | {w['bytes'] / 2**20:.2f} | {d['why']} | "
            f"{', '.join(d['needed_by'])} |"
        )
    lines += ["", "## Used from the GPU machine", "", "| package | locked here | there | why |", "|---|---|---|---|"]
    lines += [f"| {n} | {d['version']} | {d['machine']} | {d['why']} |" for n, d in kept.items()]
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_wheels", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FOLDER, help="wheel folder (default: %(default)s)")
    parser.add_argument("--plan", action="store_true", help="print the decisions and download nothing")
    args = parser.parse_args(argv)
    decisions = plan(closure())
    if args.plan:
        for name, d in decisions.items():
            print(f"{'carry' if d['carried'] else 'keep ':5s} {name}=={d['version']}: {d['why']}")
        return 0
    staging = Path(tempfile.mkdtemp(prefix="gpu-wheels-", dir=args.out.parent))
    try:
        wheels = {}
        for name, d in decisions.items():
            if not d["carried"]:
                continue
            before = set(staging.iterdir())
            how = download(name, d["version"], staging)
            [path] = [p for p in set(staging.iterdir()) - before if p.suffix == ".whl"]
            wheels[name] = {"file": path.name, "bytes": path.stat().st_size, "how": how}
            print(f"  {name}=={d['version']}: {path.name} ({path.stat().st_size / 2**20:.2f} MiB, {how})", flush=True)
        total = sum(w["bytes"] for w in wheels.values())
        if total > LIMIT_MIB * 2**20:
            raise SystemExit(f"gpu-wheels: {total / 2**20:.1f} MiB is over the {LIMIT_MIB} MiB limit")
        (staging / "MANIFEST.md").write_text(render(decisions, wheels, total))
        (staging / "manifest.json").write_text(
            json.dumps(
                {"limit_mib": LIMIT_MIB, "total_bytes": total, "packages": decisions, "wheels": wheels}, indent=1
            )
            + "\n"
        )
        shutil.rmtree(args.out, ignore_errors=True)
        staging.rename(args.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"gpu-wheels: {len(wheels)} wheels, {total / 2**20:.1f} MiB -> {args.out} (MANIFEST.md says why each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
