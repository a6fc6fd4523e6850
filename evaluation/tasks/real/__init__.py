"""lm-eval task YAMLs over shipped slices of real benchmarks (ARC, PIQA, HellaSwag, WinoGrande, NQ-open, IFEval).

Pass this folder as `--include_path`; ATTRIBUTION.md says where each slice comes from.
"""
