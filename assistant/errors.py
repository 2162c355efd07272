"""One exception tree for the whole runtime.

Library code raises these with a message that says what went wrong, which file
or value, and what to do. Only the CLI/TUI edge turns them into a one-line
message and an exit status (2 for bad input, the usual case).
"""

from __future__ import annotations


class AssistantError(Exception):
    """Base class: a problem the user can fix. Message is one line."""

    exit_code = 2


class UsageError(AssistantError):
    """A bad argument or value given by the user (empty question, bad flag...)."""


class ModelError(AssistantError):
    """A model file that cannot be used: missing, not GGUF, truncated, wrong kind."""


class ModelNotFoundError(ModelError):
    """A model name or path that does not resolve to a file."""


class ChatTemplateError(ModelError):
    """The model has no usable chat template (and no --chat-format was given)."""


class NetworkError(AssistantError):
    """A download was asked for while offline, or the network failed."""


class KnowledgeBaseError(AssistantError):
    """A knowledge base that cannot be opened, read or written."""


class ConversionError(AssistantError):
    """A model or adapter that cannot be converted."""


class StorageError(AssistantError):
    """A database or file that cannot be read or written safely."""


class RecipeError(ConversionError):
    """A build recipe (build/*.toml) or its lock file that cannot be used as written."""


class VerificationError(ModelError):
    """A built model that does not match its lock, its embedded provenance or its inputs."""
