"""Data stage: load, check, split, template, pack."""
