"""`assistant models pull`: GGUF files from the Hugging Face Hub, only when asked.

Honours HF_HUB_OFFLINE: offline, a file comes from the local Hub cache or not
at all, with a message saying so. huggingface_hub is imported here only.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..errors import NetworkError, UsageError
from ..home import Home
from ..io import atomic_writer

log = logging.getLogger(__name__)

PREFERRED_QUANTS = ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q4_0", "Q8_0")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


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
    try:
        if filename is None:
            if offline:
                raise NetworkError(
                    f"HF_HUB_OFFLINE is set, so the files of {repo_id} cannot be listed; "
                    "name the file (assistant models pull REPO FILE) to use the local cache, or unset HF_HUB_OFFLINE"
                )
            filename = choose_gguf(HfApi().list_repo_files(repo_id, revision=revision))
        cached = hf_hub_download(repo_id, filename, revision=revision, local_files_only=offline)
    except LocalEntryNotFoundError as exc:
        if offline:
            raise NetworkError(
                f"HF_HUB_OFFLINE is set and {repo_id}/{filename} is not in the local Hub cache; "
                "unset HF_HUB_OFFLINE to download it, or copy the .gguf into the model home"
            ) from exc
        raise NetworkError(
            f"could not reach the Hugging Face Hub for {repo_id}/{filename}; check the network "
            "or copy the .gguf into the model home"
        ) from exc
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise UsageError(f"{repo_id}/{filename or ''} was not found on the Hub: {exc}") from exc
    except OSError as exc:
        raise NetworkError(f"download of {repo_id}/{filename} failed: {exc}") from exc
    dest = home.ensure() / Path(filename).name
    with open(cached, "rb") as src, atomic_writer(dest) as out:
        shutil.copyfileobj(src, out, 1 << 20)
    log.info("pulled %s/%s into %s", repo_id, filename, dest)
    return dest
