"""Fitting a gate: the one training loop, fine-tuning or an embedding head, image gates, and
how good a gate's probabilities are (NLL, ECE, temperature)."""
