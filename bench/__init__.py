"""Benchmarks: pipeline overhead measured against plain transformers on the same model and data (`make bench`)."""
