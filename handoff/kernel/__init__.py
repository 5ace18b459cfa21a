"""The pure kernel: commands, events, decide, evolve, the hash-chained envelope and its codec.

Nothing in this package performs I/O or reads the clock; it imports only the standard library and
msgspec (enforced by import-linter).

Every struct is declared ``gc=False``: they hold JSON-shaped trees that cannot form reference
cycles, and keeping millions of them out of the cyclic garbage collector makes replay several times
faster.
"""
