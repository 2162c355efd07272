"""Offline edge assistant: local chat on small fine-tuned GGUF models, with local retrieval."""

__version__ = "0.1.0"
