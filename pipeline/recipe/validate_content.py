"""Checks that open the model's config and tokenizer and read the data; still nothing is trained.

Each check returns one line per problem; warnings (pad token, train/test overlap) go to the log.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from core.errors import UserError
from pipeline.recipe.config import EMBEDDED, RecipeFile

log = logging.getLogger("pipeline.recipe.validate")


def load_tokenizer_for_checks(recipe: RecipeFile, problems: list[str]):
    """The tokenizer the run will use, without building the embedded base model; a local model folder's
    config and weights are checked on the way (problems appended), and a hub id is probed once, fast."""
    if recipe.model.path == EMBEDDED:
        from embedded.tokenizer import build_tokenizer

        return build_tokenizer()
    from transformers import AutoConfig, AutoModelForCausalLM

    import bases

    path, remote = recipe.model.path, recipe.model.trust_remote_code
    if bases.is_named(path):  # converted once (SmolLM2: ~30 s), then checked like any local folder
        path = str(bases.ensure(path))
    local = Path(path).is_dir()
    hub = Hub() if local else hub_probe(path)
    if remote and has_own_code(path, hub):
        return remote_code_checks(path, local, hub, problems)
    try:  # without remote code: the model has none, or it was not asked for
        config = AutoConfig.from_pretrained(path, local_files_only=hub.cache_only)
    except (OSError, ValueError) as err:
        problems.append(f"model.path: {path}: {hub.not_readable(err, 'cannot read a model config')}")
        return None
    if type(config) not in AutoModelForCausalLM._model_mapping:
        problems.append(f"model.path: {path}: model type {config.model_type!r} is not a causal LM")
    elif local:
        problems += check_weights(path, config)
    return _tokenizer(path, hub, problems)


def _tokenizer(path: str, hub: Hub, problems: list[str]):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=hub.cache_only)
    except (OSError, ValueError, TypeError) as err:
        problems.append(f"model.path: {path}: {hub.not_readable(err, 'no usable tokenizer')}")
        return None
    if tokenizer.pad_token is None:
        log.warning("model.path: %s: tokenizer has no pad token; eos (%r) will be used", path, tokenizer.eos_token)
    return tokenizer


# --- a hub id: one quick probe instead of transformers' retries --------------------------------------------------


@dataclass
class Hub:
    """How a check reads a model's files: a local folder, or a hub id; `unreachable` says why the hub is not."""

    unreachable: str | None = None

    @property
    def cache_only(self) -> bool:
        return self.unreachable is not None

    def not_readable(self, err: Exception, what: str) -> str:
        if self.unreachable:
            return (
                f"not in the local Hugging Face cache, and the hub cannot be reached ({self.unreachable}); "
                "download the model where there is a network, or name a local folder"
            )
        return f"{what} ({_first_line(err)})"


HUB_PROBE_TIMEOUT_S = 10


def hub_probe(repo_id: str) -> Hub:
    """Whether the hub answers for `repo_id`, asked once.

    Without a network transformers retries each file for about 30 s, logging every retry, before it falls
    back to the local cache. One HEAD request without retries tells the same: when the hub cannot be reached,
    only the cache is read, and a model that is not in it is one line. HF_HUB_OFFLINE=1 skips the request
    (transformers then reads the cache only, itself).
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return Hub()
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=HUB_PROBE_TIMEOUT_S)
    except HfHubHTTPError:
        pass  # the hub answered (no such model, gated, no config.json): transformers says which, in one line
    except Exception as err:  # noqa: BLE001 - the HTTP client's DNS, connection and timeout errors
        return Hub(unreachable=f"{type(err).__name__}: {_first_line(err)}")
    return Hub()


def _from_hub(repo_id: str, filename: str, hub: Hub) -> Path | None:
    """A hub id's file from the hub or the cache, or None when it has no such file."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=hub.cache_only))
    except Exception:  # noqa: BLE001 - not there, not cached, not reachable: the callers treat it as absent
        return None


# --- trust_remote_code: nothing of the model's own code runs in a check -----------------------------------------


def _json_file(path: str, filename: str, hub: Hub):
    """A JSON file of a model folder or hub id as data; None when absent; ValueError when not JSON."""
    local = Path(path) / filename
    file = (local if local.is_file() else None) if Path(path).is_dir() else _from_hub(path, filename, hub)
    if file is None:
        return None
    return json.loads(file.read_text(encoding="utf-8"))


def has_own_code(path: str, hub: Hub) -> bool:
    """True when the model's config or tokenizer names Python files of its own (an `auto_map`)."""
    for filename in ("config.json", "tokenizer_config.json"):
        try:
            data = _json_file(path, filename, hub)
        except (OSError, ValueError):
            return True  # checked (and reported) as JSON by remote_code_checks
        if isinstance(data, dict) and data.get("auto_map"):
            return True
    return False


def remote_code_checks(path: str, local: bool, hub: Hub, problems: list[str]):
    """What can be checked of a model with its own code without running any of it (`pipeline validate` trains
    and runs nothing): config.json read as JSON, the weights' files; the tokenizer only if it needs no code."""
    from transformers import AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = _json_file(path, "config.json", hub)
    except (OSError, ValueError) as err:
        problems.append(f"model.path: {path}: config.json is not readable JSON ({_first_line(err)})")
        return None
    if not isinstance(config, dict):
        problems.append(
            f"model.path: {path}: {hub.not_readable(OSError('no config.json'), 'cannot read a model config')}"
            if config is None
            else f"model.path: {path}: config.json: expected a JSON object"
        )
        return None
    auto_map, model_type = config.get("auto_map") or {}, config.get("model_type")
    if "AutoModelForCausalLM" not in auto_map and model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        problems.append(
            f"model.path: {path}: model type {model_type!r} is not a causal LM (config.json's auto_map "
            f"names no AutoModelForCausalLM)"
        )
    if local:
        files, problem = weight_files(Path(path))
        problems += [f"model.path: {path}: {problem}"] if problem else _header_problems(path, files)[1]
    from transformers.utils import logging as hf_logging

    skipped = "its weights' names were not compared with the model"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its warning that the config's model type is one it does not know
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=hub.cache_only)
    except Exception:  # noqa: BLE001 - a tokenizer that needs its own code cannot be loaded without running it
        tokenizer, skipped = None, skipped + ", and the data checks that need its tokenizer were skipped"
    finally:
        hf_logging.set_verbosity(verbosity)
    log.warning(
        "model.path: %s: trust_remote_code: validation did not run the model's own code (the run will); "
        "config.json was read as JSON and %s",
        path,
        skipped,
    )
    if tokenizer is not None and tokenizer.pad_token is None:
        log.warning("model.path: %s: tokenizer has no pad token; eos (%r) will be used", path, tokenizer.eos_token)
    return tokenizer


# --- a model folder's weights against its config.json -----------------------------------------------------------

WEIGHTS, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
SHOWN_KEYS = 3


def weight_files(folder: Path) -> tuple[list[Path], str | None]:
    """The safetensors files transformers will load from `folder` (model.safetensors, else the index's shards),
    or a problem: no weights, pickle weights only (this project loads safetensors only), a broken index."""
    if (folder / WEIGHTS).is_file():
        return [folder / WEIGHTS], None
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            return [], f"{WEIGHTS_INDEX}: not a safetensors index with a weight_map ({type(err).__name__}: {err})"
        absent = [name for name in shards if not (folder / name).is_file()]
        if absent:
            return [], f"{WEIGHTS_INDEX} names {len(absent)} shard(s) missing from the folder ({_few(absent)})"
        return [folder / name for name in shards], None
    others = sorted(p.name for p in folder.iterdir() if p.is_file())
    pickles = [name for name in others if name.endswith(PICKLE_SUFFIXES)]
    if pickles:
        return [], (
            f"only pickle weights ({_few(pickles)}), and this project loads safetensors only: convert them "
            f"(load the model with transformers and save_pretrained it to write {WEIGHTS})"
        )
    loose = [name for name in others if name.endswith(".safetensors")]
    found = f"; it has {_few(loose)} but neither of those" if loose else ""
    return [], f"no weights: expected {WEIGHTS} or {WEIGHTS_INDEX}{found}"


def _header_problems(path: str, files: list[Path]) -> tuple[dict, list[str]]:
    """Every tensor's name and shape from the safetensors headers (no weights are read), or one line per bad file."""
    from safetensors import SafetensorError, safe_open

    shapes, problems = {}, []
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                shapes.update({key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()})
        except (SafetensorError, OSError, ValueError) as err:
            problems.append(f"model.path: {path}: {file.name}: not a readable safetensors file ({_first_line(err)})")
    return shapes, problems


def check_weights(path: str, config) -> list[str]:
    """The folder's weights are safetensors whose tensors are exactly the ones `config` builds, shapes included.

    transformers fills a tensor missing from the files with random values and drops one the model has no place
    for, with a warning, so a config.json of 6 layers over 4 layers of weights (or a BERT config over Llama
    weights) would train a partly random model. Names are compared as transformers loads them: its renamings,
    the base-model prefix, tied weights and each model's keys it may ignore; only headers are read.
    """
    files, problem = weight_files(Path(path))
    if problem:
        return [f"model.path: {path}: {problem}"]
    found, problems = _header_problems(path, files)
    if problems:
        return problems
    if getattr(config, "quantization_config", None):  # its tensors are the quantizer's, not the plain model's
        return []
    try:
        missing, unexpected, reshaped = compare_weights(config, found)
    except Exception as err:  # noqa: BLE001 - a model that cannot be built on the meta device: not checked
        log.warning(
            "model.path: %s: weights not compared with config.json (the model does not build on the meta "
            "device: %s: %s)",
            path,
            type(err).__name__,
            _first_line(err),
        )
        return []
    parts = []
    if missing:
        parts.append(
            f"{len(missing)} tensor(s) the model needs are not in them ({_few(missing)}); "
            "they would train from random values"
        )
    if unexpected:
        parts.append(f"{len(unexpected)} tensor(s) in them have no place in the model ({_few(unexpected)})")
    if reshaped:
        key, have, want = reshaped[0]
        parts.append(
            f"{len(reshaped)} tensor(s) have another shape ({key}: {list(have)} in the files, "
            f"{list(want)} by config.json{', ...' if len(reshaped) > 1 else ''})"
        )
    if not parts:
        return []
    return [
        f"model.path: {path}: the weights do not match config.json (model type {config.model_type!r}): "
        + "; ".join(parts)
    ]


def compare_weights(config, found: dict[str, tuple]) -> tuple[list[str], list[str], list[tuple]]:
    """(missing, unexpected, reshaped) tensor names of checkpoint `found` (name -> shape) for a model of `config`."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # shapes and names only: no memory, no initialisation
        model = AutoModelForCausalLM.from_config(config)
    expected = model.state_dict()
    rename = _renamer(model, expected)
    loaded, unexpected, reshaped = set(), set(), []
    for key in sorted(found, key=_natural):
        names = rename(key)
        if names is None:
            unexpected.add(key)
            continue
        loaded.update(names)
        if len(names) == 1 and found[key] != tuple(expected[names[0]].shape):
            reshaped.append((key, found[key], tuple(expected[names[0]].shape)))
    missing = set(expected) - loaded
    for target, source in (getattr(model, "all_tied_weights_keys", None) or {}).items():
        if target not in missing or source not in missing:  # one of a tied pair is enough: transformers ties them
            missing -= {target, source}
    info = SimpleNamespace(missing_keys=missing, unexpected_keys=unexpected)
    adjust = getattr(model, "_adjust_missing_and_unexpected_keys", None)
    if adjust is not None:  # the model's own ignore rules (e.g. old rotary_emb.inv_freq buffers)
        adjust(info)
    return sorted(info.missing_keys, key=_natural), sorted(info.unexpected_keys, key=_natural), reshaped


def _renamer(model, expected: dict):
    """key -> the model's parameter names it loads into (None: no place), as transformers renames checkpoint keys."""
    prefix = model.base_model_prefix
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

        transforms = get_model_conversion_mapping(model)
        renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
        converters = [t for t in transforms if isinstance(t, WeightConverter)]
    except ImportError:  # another transformers: plain names with the base-model prefix added or dropped
        renamings, converters, rename_source_key = [], [], None
    by_pattern = {pattern: c for c in converters for pattern in c.source_patterns}

    def rename(key: str) -> list[str] | None:
        if rename_source_key is None:
            bare = key.removeprefix(f"{prefix}.")
            name = next((n for n in (key, bare, f"{prefix}.{key}") if n in expected), None)
            return None if name is None else [name]
        name, pattern = rename_source_key(key, renamings, converters, prefix, expected)
        if name not in expected and key in expected:
            name, pattern = rename_source_key(key, [], [], prefix, expected)
        if name not in expected:
            return None
        if pattern is None:
            return [name]
        targets = by_pattern[pattern].target_patterns
        return [name.replace(targets[0], t) for t in targets]

    return rename


def _natural(key: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _few(names) -> str:
    names = list(names)
    more = f", ... {len(names) - SHOWN_KEYS} more" if len(names) > SHOWN_KEYS else ""
    return ", ".join(names[:SHOWN_KEYS]) + more


def check_content(recipe: RecipeFile) -> list[str]:
    """Load every data source once and check what would hurt training: emptiness, truncation, overlap."""
    problems: list[str] = []
    tokenizer = load_tokenizer_for_checks(recipe, problems)
    if tokenizer is None:
        return problems
    import datasets

    from data_recipes.catalog import load_source

    datasets.disable_progress_bars()  # a check prints its findings, not progress bars
    sources = {name: (f"data.{name}", config) for name, config in recipe.data.items()}
    if recipe.target is not None:
        t = recipe.target
        sources["target"] = ("target.train", t.source("train"))
    for i, t in enumerate(recipe.targets):  # several targets: each one's training data, checked alike
        sources[t.name] = (f"targets[{i}].train", t.source("train"))
    loaded = {}
    for name, (field, config) in sources.items():
        try:
            loaded[name] = load_source(config, tokenizer).data
        except UserError as err:
            problems.append(f"{field}: {err}")
            continue
        except (OSError, ValueError, KeyError) as err:
            problems.append(f"{field}: {config.source}: cannot load ({_first_line(err)})")
            continue
        if len(loaded[name]) == 0:
            problems.append(f"{field}: {config.source}: no rows left after filtering")
            continue
        problems += check_truncation(field, config.source, loaded[name], tokenizer, recipe.max_length)
    for t in recipe.targets:
        if t.name in loaded:
            problems += check_labels(t.labels, loaded[t.name], tokenizer)
    if recipe.target is not None and "target" in loaded:
        problems += check_labels(recipe.target.labels, loaded["target"], tokenizer)
        if recipe.target.test:
            problems += warn_overlap(recipe, loaded["target"], tokenizer)
    return problems


def check_labels(labels: list[str], train, tokenizer) -> list[str]:
    """Each label is something the model can write, and an answer the target's data actually gives."""
    problems = []
    unknown = tokenizer.unk_token_id
    words = {word for completion in train["completion"] for word in completion.split()}
    for label in labels:
        # As trained: after the prompt, with the leading space the converters give an answer.
        ids = tokenizer(" " + label, add_special_tokens=False)["input_ids"]
        if unknown is not None and unknown in ids:
            problems.append(
                f"target.labels: {label!r} encodes to the tokenizer's unknown token "
                f"{tokenizer.unk_token!r}: the model cannot write it"
            )
        elif label not in words:
            problems.append(f"target.labels: {label!r} never occurs in the target's answers (target.train)")
    return problems


def check_truncation(field: str, source: str, data, tokenizer, max_length: int) -> list[str]:
    """Examples whose prompt alone fills max_length would train on nothing: an error if all, a warning if some."""
    from stages.sft_data import count_fully_truncated

    cut = count_fully_truncated(data, tokenizer, max_length)
    if cut == len(data):
        return [
            f"{field}: {source}: all {cut} examples would be truncated away by max_length={max_length} "
            f"(prompts are at least that long); raise max_length"
        ]
    if cut:
        log.warning(
            "%s: %s: %d of %d examples (%.1f%%) lose their whole answer to max_length=%d",
            field,
            source,
            cut,
            len(data),
            100 * cut / len(data),
            max_length,
        )
    return []


def warn_overlap(recipe: RecipeFile, train, tokenizer) -> list[str]:
    """The test data loads (a problem in it is an error, as in the run); warn when test prompts are also trained on."""
    from data_recipes.catalog import load_source

    t = recipe.target
    try:
        test = load_source(t.source("test"), tokenizer).data
    except UserError as err:
        return [f"target.test: {err}"]
    overlap = len(set(test["prompt"]) & set(train["prompt"]))
    if overlap:
        log.warning(
            "target.test: %d of %d test prompts also appear in target.train; scores will be optimistic",
            overlap,
            len(test),
        )
    return []


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
