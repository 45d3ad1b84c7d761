"""Unlearning methods, one module each, registered by name; model merging; the ZJUKLAB system."""
