"""Audit and replay: verify the log's hash chains and projections, rebuild views, export and import."""
