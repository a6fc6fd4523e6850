"""The run engine: the plan and its keys, the orchestrator, the run folder's markers, manifest and lock, and
results.csv as written. Never imports the reports or retraining (pipeline/run.py adds the report after a run)."""
