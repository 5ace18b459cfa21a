"""The pure kernel: commands, events, decide, evolve, the hash-chained envelope and its codec.

Nothing in this package performs I/O or reads the clock; it imports only the standard library and
msgspec (enforced by import-linter).
"""
