"""The local OpenAI fine-tuning API: files, jobs, their worker (see api.py, worker.py)."""
