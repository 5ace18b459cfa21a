"""Kafka mode: topics, the workers that decide and project on Kafka transactions, and the adapter's command bus."""
