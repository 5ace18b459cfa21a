"""Projections: pure folds of the event log into read models (views), and the stores that hold them."""
