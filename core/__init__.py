"""The ground floor: what every other package may import, and which imports none of them.

User errors (errors.py), process ranks (ranks.py), atomic writes (atomic.py), the CPU kernels (machine.py), the
typed YAML loader (typed_yaml.py), recipe source lines (source_lines.py) and named registries (registry.py). The
floors above, from the bottom: core; bases, embedded, data_recipes, evaluation; stages; pipeline (tests/test_layers.py).
"""
