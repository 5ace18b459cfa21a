"""The embedded engine: the RocksDB log, the single writer with group commit, and the query side."""
