"""Versions written in the formats other engines serve: GGUF with an Ollama Modelfile, Hub, vLLM and TGI."""
