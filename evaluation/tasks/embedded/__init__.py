"""lm-eval task YAMLs for the embedded synthetic tasks; pass this folder as `--include_path`."""
