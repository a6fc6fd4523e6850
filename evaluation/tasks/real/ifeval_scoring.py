"""IFEval scored offline by lm-eval's own `process_results`, with nltk's punkt_tab English model shipped here.

lm-eval's ifeval/instructions_util.py calls `nltk.download("punkt_tab")` at import when nltk cannot find it,
and two instruction types need that model when scoring: length_constraints:number_sentences (punkt
sentence splitting; nltk turns lm-eval's "tokenizers/punkt/english.pickle" into the punkt_tab model) and
change_case:capital_word_frequency (nltk.word_tokenize). Offline the download fails and those checks raise
LookupError; so importing this module first puts the shipped copy (nltk_data/, see ATTRIBUTION.md) on
nltk's path, and fails loudly if nltk still cannot load it.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import nltk
from nltk.tokenize import PunktTokenizer

NLTK_DATA = Path(__file__).resolve().parent / "nltk_data"
PUNKT_ENGLISH = Path("tokenizers", "punkt_tab", "english")
PUNKT_INSTRUCTIONS = ("length_constraints:number_sentences", "change_case:capital_word_frequency")


def use_shipped_punkt(source: Path = NLTK_DATA) -> Path:
    """Make nltk load punkt_tab English from `source` (or a private copy of it); return the data root used."""
    if _loads_from(source):
        return source
    # nltk (3.10) reads a data root only when it and everything below it are private to their owner (no
    # group/world write): a checkout made under umask 002 is refused. A private copy in the cache is not.
    copy = Path(os.environ.get("FORGETLESS_CACHE") or Path.home() / ".cache" / "forgetless") / "nltk_data"
    if (source / PUNKT_ENGLISH).is_dir():
        _private_copy(source / PUNKT_ENGLISH, copy)
        if _loads_from(copy):
            return copy
    raise RuntimeError(
        f"nltk cannot load its punkt_tab English model from {source} or {copy}; lm-eval's IFEval would "
        f"fail to score {', '.join(PUNKT_INSTRUCTIONS)}. Put punkt_tab on nltk's path (NLTK_DATA)."
    )


def _loads_from(root: Path) -> bool:
    """Put root first on nltk's path and check the punkt_tab English model found there loads."""
    root_text = str(root)
    if root_text in nltk.data.path:
        nltk.data.path.remove(root_text)
    nltk.data.path.insert(0, root_text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nltk's "will not read data from ..." notice
        try:
            nltk.data.find(PUNKT_ENGLISH.as_posix() + "/", paths=[root_text])
            PunktTokenizer("english")
            return True
        except (LookupError, OSError):  # PermissionError is an OSError
            nltk.data.path.remove(root_text)
            return False


def _private_copy(model_dir: Path, root: Path) -> None:
    """Copy the model's files to root/tokenizers/punkt_tab/english, every folder 0700 and file 0600."""
    target = root / PUNKT_ENGLISH
    target.mkdir(parents=True, exist_ok=True)
    folder = root
    folder.chmod(0o700)
    for part in PUNKT_ENGLISH.parts:  # and each folder down to the model
        folder = folder / part
        folder.chmod(0o700)
    for src in sorted(model_dir.iterdir()):
        dst = target / src.name
        if not dst.is_file() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)
        dst.chmod(0o600)


use_shipped_punkt()  # before lm-eval's instructions_util is imported: it downloads when nltk finds nothing

from lm_eval.tasks.ifeval.utils import agg_inst_level_acc, process_results  # noqa: E402

__all__ = ["process_results", "agg_inst_level_acc", "use_shipped_punkt"]
