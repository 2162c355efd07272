"""Modal screens of the chat UI (one a file)."""
