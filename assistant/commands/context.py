"""What every command gets from the root group (``ctx.obj``): the model home and the verbosity."""

from __future__ import annotations

from ..home import Home


class AppContext:
    """The model home (resolved on first use, so --help needs none) and --verbose."""

    def __init__(self, home: str | None, verbose: bool) -> None:
        self._home_arg = home
        self.verbose = verbose
        self._home: Home | None = None

    @property
    def home(self) -> Home:
        if self._home is None:
            self._home = Home.resolve(self._home_arg)
        return self._home
