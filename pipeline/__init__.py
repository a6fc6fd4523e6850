"""forgetless's pipeline, in layers (each imports only the ones before it; tests/test_layers.py holds them):

- formats.py     the run folder's record formats (results.csv's columns), shared by all
- recipe/        the recipe file: its config, --set, sweeps, paths, declared checks and gate, validation
- engine/        the run engine: plan and keys, the orchestrator, markers, manifest, lock, results.csv written
- reports/       results read back, the report and its plots, checks measured, per-task statistics
- run.py         a run, then its report (the one place the engine and the reports meet)
- retraining/    scheduled retraining: the gate, the model registry, the data fingerprint
- cli.py         `pipeline run/validate/ls/report/retrain/gate`
"""
