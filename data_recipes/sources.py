"""Load raw rows from local files or the Hugging Face hub, with one-line errors for bad data."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import datasets

from core.errors import UserError
from core.hashing import file_sha256

# File suffix -> `datasets` builder. Anything without one of these suffixes is a hub id.
LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


class DataError(UserError):
    """A problem with the user's data; the message is one line naming the file, row or field."""


def load_rows(
    source: str, split: str = "train", config: str | None = None, revision: str | None = None
) -> datasets.Dataset:
    """Load a local .jsonl/.json/.parquet/.csv file, or a hub dataset id (at `revision`), as a `datasets.Dataset`."""
    builder = LOCAL_BUILDERS.get(Path(source).suffix.lower())
    if builder is None:
        rows = _load_hub(source, split, config, revision)
    else:
        rows = _load_local(Path(source), builder, split)
    if len(rows) == 0:
        raise DataError(f"{source}: no rows in split '{split}'")
    return rows


def fingerprint(path: str | Path) -> str:
    """Return the sha256 hex digest of a file's content, for run manifests."""
    return file_sha256(path)


def _load_local(path: Path, builder: str, split: str) -> datasets.Dataset:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    options = {}
    if builder == "json":
        # Checked here because `datasets` reports a bad line as a pyarrow error without a line number.
        _check_json(path, _read_text(path))
    elif builder == "csv":
        options = _csv_options(path, _read_text(path))
    try:
        return datasets.load_dataset(builder, data_files={split: str(path)}, split=split, **options)
    except Exception as error:  # pyarrow/pandas raise many types; the user needs the file and reason
        if "corresponds to no data" in str(error):  # how `datasets` reports a file without rows
            raise DataError(f"{path}: no rows") from None
        raise DataError(f"{path}: cannot read as {builder} ({_first_line(error)})") from error


def _load_hub(source: str, split: str, config: str | None, revision: str | None = None) -> datasets.Dataset:
    try:
        return datasets.load_dataset(source, config, split=split, revision=revision)
    except Exception as error:  # not found, offline, gated, missing config: all user-facing
        raise DataError(f"{source}: cannot load from the hub ({type(error).__name__}: {_first_line(error)})") from error


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {error.start})") from None


def _csv_options(path: Path, text: str) -> dict:
    """Read every CSV column as text: pandas would turn "42" into an int and "NA" into a missing value."""
    header = next(csv.reader(io.StringIO(text)), None)
    if not header:
        raise DataError(f"{path}: no rows (file is empty)")
    features = datasets.Features({name: datasets.Value("string") for name in header})
    return {"features": features, "keep_default_na": False}


def _check_json(path: Path, text: str) -> None:
    """Check a JSON document (.json array or object) or JSON Lines; report the first bad line."""
    first = next((line for line in text.split("\n") if line.strip()), None)
    if first is None:
        raise DataError(f"{path}: no rows (file is empty)")
    # Split on "\n" only, as JSON Lines readers do: str.splitlines() also breaks at U+2028,
    # which JSON allows raw inside strings. A .json file may hold JSON Lines too; whether its
    # first line alone is an object tells them apart.
    if path.suffix.lower() == ".json" and not _is_json_object(first):
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{error.lineno}: invalid JSON ({error.msg} at column {error.colno})") from None
        return
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: invalid JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
