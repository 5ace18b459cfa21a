"""The storage layer: the ordered key-value store (RocksDB, or its fake), its key layout, and the log kept in it."""
