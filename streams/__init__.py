"""Kafka mode: topics, the faust decider and projector agents, and the adapter's command bus."""
