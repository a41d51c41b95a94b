"""tunesmith: fine-tune language models end to end, on one machine or many."""

__version__ = "0.1.0"
