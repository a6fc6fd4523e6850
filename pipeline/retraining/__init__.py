"""Scheduled retraining: the gate, the model registry of accepted runs, the data fingerprint."""
