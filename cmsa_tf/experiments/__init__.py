"""Experiments built on training and evaluation: the paper's ablations (Tables 2 and 3)."""
