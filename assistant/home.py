"""Where models, knowledge bases and conversations live (the "model home").

Resolution order, first match wins:
1. an explicit path (``--home``),
2. the ``ASSISTANT_HOME`` environment variable,
3. ``models/`` of a source checkout (this package sits next to ``pyproject.toml``),
4. ``models/`` of the virtual environment it is installed in, when a bundle's install.sh made
   it (marked by ``.assistant-home``),
5. the platform's user data directory (an installed copy).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import StorageError

ENV_VAR = "ASSISTANT_HOME"
APP_NAME = "edge-assistant"
INSTALL_HOME_MARK = ".assistant-home"  # written by assistant/bundle/site_install.py


def _checkout_models_dir() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "models").is_dir():
        return root / "models"
    return None


def _install_models_dir() -> Path | None:
    home = Path(sys.prefix) / "models"
    return home if sys.prefix != sys.base_prefix and (home / INSTALL_HOME_MARK).is_file() else None


def _user_data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


def resolve_home(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the model home directory (not created here)."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    checkout = _checkout_models_dir()
    if checkout is not None:
        return checkout
    return _install_models_dir() or _user_data_dir()


@dataclass(frozen=True)
class Home:
    """The model home and the fixed layout inside it."""

    root: Path

    @classmethod
    def resolve(cls, explicit: str | os.PathLike[str] | None = None) -> Home:
        return cls(resolve_home(explicit))

    @property
    def adapters_dir(self) -> Path:
        return self.root / "adapters"

    @property
    def knowledge_dir(self) -> Path:
        return self.root / "knowledge"

    @property
    def default_kb(self) -> Path:
        return self.knowledge_dir / "default.db"

    @property
    def conversations_db(self) -> Path:
        return self.root / "conversations.db"

    def ensure(self) -> Path:
        """Create the home (and its sub-directories) if missing."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the model home {self.root}: {exc.strerror}; "
                f"set {ENV_VAR} or --home to a writable directory"
            ) from exc
        return self.root
