"""What a base model is, by content: the stage keys' `upstream` of the base evaluation and of every first stage.

A local folder is known by the bytes of the files transformers loads from it (config, weights, tokenizer, chat
template, remote code), so a changed weight or tokenizer changes every key. Hashing gigabytes of weights on every
plan would be slow: each weight file's sha256 is cached by its absolute path, size and mtime, in
$FORGETLESS_CACHE/content-sha256.json (else ~/.cache/forgetless), so a replan reads the cache.

A hub id is fetched once as a local snapshot of the files transformers loads (huggingface_hub.snapshot_download)
at `model.revision` (a branch, tag or commit; none: the hub's default branch), so the run trains and evaluates
exactly the files its key hashes. Offline, the snapshot comes from the local Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core.hashing import file_sha256

# The files a model folder is loaded from (stages/model_io.py loads safetensors weights only); anything else in the
# folder (a README, build.json's timings, checkpoints in subfolders) changes no number.
LOADED = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken", "*.py")
NOT_LOADED = ("build.json",)  # how a named base was built (recorded in the manifest), not what it is
CACHE_FILE = "content-sha256.json"
CACHED_ABOVE = 1 << 20  # files larger than this have their hash cached; smaller ones are hashed every time


def loaded_files(folder: Path) -> list[Path]:
    """The files of a model folder that its loading reads, sorted by name."""
    found = {p for pattern in LOADED for p in folder.glob(pattern) if p.is_file() and p.name not in NOT_LOADED}
    return sorted(found, key=lambda p: p.name)


def folder_identity(folder: Path) -> str:
    """'folder:' and one sha256 over the name and content hash of every loaded file of the folder."""
    cache = _Cache()
    digest = hashlib.sha256()
    for path in loaded_files(folder):
        digest.update(f"{path.name}\0{cache.sha256(path)}\n".encode())
    cache.save()
    return f"folder:{digest.hexdigest()}"


class _Cache:
    """sha256 of large files by (absolute path, size, mtime_ns); a stale or unreadable cache is only slower."""

    def __init__(self):
        from embedded.model import cache_root_dir

        self.path = cache_root_dir() / CACHE_FILE
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    def sha256(self, path: Path) -> str:
        stat = path.stat()
        if stat.st_size <= CACHED_ABOVE:
            return file_sha256(path)
        name, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns]
        entry = self.entries.get(name)
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            return entry["sha256"]
        self.entries[name] = {"stamp": stamp, "sha256": file_sha256(path)}
        self.changed = True
        return self.entries[name]["sha256"]

    def save(self) -> None:
        if not self.changed:
            return
        from core.atomic import write_text

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.path, json.dumps(self.entries, sort_keys=True))
        except OSError:  # a read-only cache: the next plan hashes again
            pass


def hub_snapshot(repo_id: str, revision: str | None, trust_remote_code: bool = False) -> Path:
    """The local folder of a hub model at `revision` (None: the default branch), with the files transformers loads.

    Online, huggingface_hub resolves the revision to a commit and downloads what the cache lacks; offline
    (HF_HUB_OFFLINE=1, or no network) it returns the cached snapshot of that revision, or raises.
    """
    from huggingface_hub import snapshot_download

    patterns = [p for p in LOADED if trust_remote_code or p != "*.py"]
    return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))


def resolve_hub_base(model, manifest) -> Path:
    """`model.path` as a hub id: its snapshot folder at `model.revision`, recorded in the manifest's base_model.

    Raises UserError in one line when the hub cannot give it (offline and not cached, unknown id or revision)."""
    from core.errors import UserError, every_rank

    try:
        folder = hub_snapshot(model.path, model.revision, model.trust_remote_code)
    except Exception as err:  # offline, not found, gated, bad revision: all the user's to fix
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        at = f" at revision {model.revision!r}" if model.revision else ""
        raise every_rank(
            UserError(
                f"model.path: {model.path!r} is no folder here, and the hub cannot give it{at} "
                f"({type(err).__name__}: {first})"
            )
        ) from None
    manifest.data["base_model"] = {
        "name": model.path,
        "revision": model.revision or "default branch",
        "commit": folder.name,
        "path": str(folder),
    }
    return folder
