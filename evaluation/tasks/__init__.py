"""lm-evaluation-harness task YAMLs shipped with forgetless (one folder per `--include_path`)."""
