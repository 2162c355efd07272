"""`assistant models pull`: GGUF files from the Hugging Face Hub, only when asked.

Honours HF_HUB_OFFLINE: offline, a file comes from the local Hub cache or not
at all, with a message saying so. huggingface_hub is imported here only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

from ..errors import NetworkError, UsageError
from ..home import Home
from ..io import atomic_writer

log = logging.getLogger(__name__)

PREFERRED_QUANTS = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q4_0", "Q8_0")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _network_down(exc: BaseException) -> bool:
    """Whether an error from the Hub client means the network (or the Hub) cannot be reached.

    The client's transport library changes between versions (requests, httpx, httpx2), so
    this looks for the socket error underneath, or a transport error by name.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionError | TimeoutError | socket.gaierror):
            return True
        if any(c.__name__ in _TRANSPORT_ERRORS for c in type(cur).__mro__):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


_TRANSPORT_ERRORS = frozenset(
    {"TransportError", "ConnectError", "ConnectTimeout", "ConnectionError", "Timeout"}
)


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """The Hub client's own warnings (retries, cache fallbacks) are ours to report, in one line."""
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    if not log.isEnabledFor(logging.DEBUG):
        hub_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hub_log.setLevel(level)


def choose_gguf(files: list[str]) -> str:
    """Pick one GGUF from a repo listing: the usual Q4_K_M if present."""
    ggufs = [f for f in files if f.lower().endswith(".gguf")]
    if not ggufs:
        raise UsageError("the repository has no .gguf file; convert its weights with `assistant convert`")
    if len(ggufs) == 1:
        return ggufs[0]
    for quant in PREFERRED_QUANTS:
        hits = [f for f in ggufs if quant.lower() in f.lower()]
        if len(hits) == 1:
            return hits[0]
    raise UsageError(f"the repository has several GGUF files; name one: {', '.join(sorted(ggufs))}")


def pull(repo_id: str, filename: str | None, home: Home, *, revision: str | None = None) -> Path:
    """Download one GGUF into the model home and return its path."""
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise UsageError(f"{repo_id!r} is not a Hub repository id (expected OWNER/NAME)")
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    offline = hub_offline()
    no_network = NetworkError(
        f"no network: could not reach the Hugging Face Hub for {repo_id}; set HF_HUB_OFFLINE=1 to use "
        "the local cache, or copy the .gguf into the model home"
    )
    try:
        with _quiet_hub():
            if filename is None:
                if offline:
                    raise NetworkError(
                        f"HF_HUB_OFFLINE is set, so the files of {repo_id} cannot be listed; name the file "
                        "(assistant models pull REPO FILE) to use the local cache, or unset HF_HUB_OFFLINE"
                    )
                filename = choose_gguf(HfApi().list_repo_files(repo_id, revision=revision))
            cached = hf_hub_download(repo_id, filename, revision=revision, local_files_only=offline)
    except LocalEntryNotFoundError as exc:
        if offline:
            raise NetworkError(
                f"HF_HUB_OFFLINE is set and {repo_id}/{filename} is not in the local Hub cache; "
                "unset HF_HUB_OFFLINE to download it, or copy the .gguf into the model home"
            ) from exc
        raise no_network from exc
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise UsageError(f"{repo_id}/{filename or ''} was not found on the Hub: {exc}") from exc
    except Exception as exc:
        if _network_down(exc):
            raise no_network from exc
        if isinstance(exc, OSError):
            raise NetworkError(f"download of {repo_id}/{filename} failed: {exc}") from exc
        raise
    dest = home.ensure() / Path(filename).name
    with open(cached, "rb") as src, atomic_writer(dest) as out:
        shutil.copyfileobj(src, out, 1 << 20)
    log.info("pulled %s/%s into %s", repo_id, filename, dest)
    return dest
