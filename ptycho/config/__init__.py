"""Configuration dataclasses (TensorFlow- and torch-free)."""
