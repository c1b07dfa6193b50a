"""Structured channel pruning of Keras 3 functional models."""
