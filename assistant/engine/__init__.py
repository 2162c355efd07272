"""Inference engine: chat GGUF models through llama.cpp (no UI imports).

Importing this package is cheap; llama_cpp is loaded when a model is opened.
"""

from ..message import Message
from .chat import ChatModel, ChatResult, ChatStream, Conversation, Timings, validate_chat_model
from .context import ContextReport
from .sampling import SamplingParams

__all__ = [
    "ChatModel",
    "ChatResult",
    "ChatStream",
    "ContextReport",
    "Conversation",
    "Message",
    "SamplingParams",
    "Timings",
    "validate_chat_model",
]
