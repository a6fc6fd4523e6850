"""The run folder's record formats, shared by every layer of pipeline/ (it imports none of them).

results.csv's columns live here: the run engine writes them (pipeline/engine/results_csv.py), the reports read
them (pipeline/reports/results.py), and the recipe refuses a swept field named like one (pipeline/recipe/sweep.py).
"""

# The version of a run folder's records (manifest.json, DONE.json), written into each; pipeline/engine/migrate.py
# upgrades an older folder's records as they are read and refuses a newer one. 1: every folder before it was written.
FORMAT_VERSION = 2

COLUMNS = ["recipe", "seed", "stage", "task", "suite", "metric", "score", "n"]
# Columns added later: a missing one reads as this value.
OPTIONAL = {"stderr": float("nan"), "primary": 1, "paired_stderr": float("nan")}
GROUP = "group"  # written only where a general task has a group (pipeline/engine/results_csv.py)
SUITE_KINDS = {"general", "target", "domain"}
LEAK = "format_leak"  # the metric of a target's format-leak rows
