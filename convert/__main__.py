"""``python -m convert convert ...`` / ``python -m convert convert-adapter ...``."""

from .cli import main

main()
