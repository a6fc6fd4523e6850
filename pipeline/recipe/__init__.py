"""The recipe file: typed config, `--set`, sweeps, paths, the declared checks and gate, and validation.

Imports nothing of pipeline/ but itself and pipeline/formats.py."""
