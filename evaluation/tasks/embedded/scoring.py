"""Domain scorers for the embedded task YAMLs (`process_results: !function scoring.score_math`)."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from evaluation.domain_scoring import precheck_code, score_code, score_math
except ImportError:
    # As in data.py: from lm-eval's CLI outside an installed checkout, the repo root is not importable yet.
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from evaluation.domain_scoring import precheck_code, score_code, score_math

__all__ = ["precheck_code", "score_code", "score_math"]
