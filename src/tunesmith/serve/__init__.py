"""Serving: an OpenAI-compatible FastAPI server over one base model and many adapters."""
