"""Install (or update) the offline assistant from a bundle, at a site with no network.

Shipped in every bundle as install.py and run by install.sh with the site's python3, so it uses
the standard library only. Order matters: every file is checked against manifest.json before
anything is installed, and the interpreter and platform before a virtual environment is made.

    python3 install.py [PREFIX] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATE = "bundle"  # PREFIX/bundle/: the installed manifest and the wheels (updates install from them)
HOME_MARK = ".assistant-home"  # PREFIX/models/ with this file is the install's model home


class SiteError(Exception):
    """One line for the operator: what is wrong and what to do."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def say(msg: str) -> None:
    print(msg, flush=True)


def load_manifest(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SiteError(f"{path} is missing: this directory is not a complete bundle") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SiteError(f"{path} is damaged ({exc}); copy the bundle again") from None


def check_files(manifest: dict) -> None:
    """Every file the bundle carries is present with its size and sha256; else nothing is installed."""
    bad = []
    for e in manifest["files"]:
        if not e.get("carried", True):
            continue
        p = HERE / e["path"]
        if not p.is_file():
            bad.append(f"{e['path']} (missing)")
        elif p.stat().st_size != e["size"] or sha256(p) != e["sha256"]:
            bad.append(f"{e['path']} (sha256 differs from manifest.json)")
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise SiteError(
            f"bundle file {bad[0]}{more}: nothing was installed; copy the bundle again from its source"
        )


def check_interpreter(manifest: dict) -> None:
    want_py, want_pf = manifest["python"], manifest["platform"]
    have = f"{sys.version_info.major}.{sys.version_info.minor}"
    if sys.implementation.name != want_py["implementation"] or have != want_py["version"]:
        raise SiteError(
            f"this bundle was made for {want_py['implementation']} {want_py['version']} on "
            f"{want_pf['system']} {want_pf['machine']}, this is {sys.implementation.name} {have} "
            f"({sys.executable}); run it with that Python (PYTHON=/path/to/python{want_py['version']} ./install.sh) "
            "or make the bundle on a machine with this Python"
        )
    if platform.system() != want_pf["system"] or platform.machine() != want_pf["machine"]:
        raise SiteError(
            f"this bundle was made for {want_pf['system']} {want_pf['machine']}, this machine is "
            f"{platform.system()} {platform.machine()}; make the bundle on a machine like this one"
        )


def run(cmd: list[str], what: str, env: dict | None = None) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise SiteError(f"{what} failed (exit {r.returncode}): {tail[0]}")
    return r.stdout


def pip_env() -> dict:
    """The site's environment without PIP_* settings (an index URL or find-links of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def pip(prefix: Path, *args: str) -> None:
    run(
        [str(prefix / "bin" / "python"), "-m", "pip", *args, "--isolated", "--no-index", "-q"],
        "pip " + args[0],
        pip_env(),
    )


def make_venv(prefix: Path, wheels: Path) -> None:
    """A venv without ensurepip (Debian's python3 may lack it); pip comes from the bundle's wheel."""
    say(f"creating a virtual environment in {prefix}")
    run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], "python3 -m venv")
    pip_wheel = next(iter(sorted(wheels.glob("pip-*.whl"))), None)
    if pip_wheel is None:
        raise SiteError("the bundle has no pip wheel; make it again with a current `assistant bundle`")
    run(
        [
            str(prefix / "bin" / "python"),
            f"{pip_wheel}/pip",
            "install",
            "--isolated",
            "--no-index",
            "-q",
            str(pip_wheel),
        ],
        "installing pip",
        pip_env(),
    )


def place(src: Path, dest: Path) -> None:
    """Copy then rename: a model is never half-written in the home."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.installing")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dest)


def install_files(manifest: dict, prefix: Path) -> None:
    home, state = prefix / "models", prefix / STATE
    home.mkdir(parents=True, exist_ok=True)
    (home / HOME_MARK).write_text("the model home of this install (made by a bundle's install.sh)\n")
    for e in manifest["files"]:
        if not e.get("carried", True):
            continue
        rel = e["path"]
        if rel.startswith("home/"):
            place(HERE / rel, home / rel[len("home/") :])
        elif rel.startswith("recipes/"):
            place(HERE / rel, prefix / rel)
        elif rel.startswith("wheels/"):
            place(HERE / rel, state / rel)


def check_update_base(manifest: dict, prefix: Path) -> dict:
    """An update applies to the install it was made for: the files it leaves out must be there."""
    old_path = prefix / STATE / "manifest.json"
    if not (prefix / "bin" / "assistant").exists() or not old_path.is_file():
        raise SiteError(
            f"this is an update bundle and {prefix} has no install made from a bundle; "
            "install the full bundle first (or give the PREFIX of the existing install)"
        )
    old = load_manifest(old_path)
    have = {e["path"]: e["sha256"] for e in old["files"]}
    for e in manifest["files"]:
        if not e.get("carried", True) and have.get(e["path"]) != e["sha256"]:
            raise SiteError(
                f"this update leaves out {e['path']} because the site should have it, but the install in "
                f"{prefix} has {'another version' if e['path'] in have else 'no such file'}; "
                "apply the updates in order, or install a full bundle"
            )
    return old


def install(prefix: Path, force: bool) -> None:
    manifest = load_manifest(HERE / "manifest.json")
    say(f"checking {sum(1 for e in manifest['files'] if e.get('carried', True))} files against manifest.json")
    check_files(manifest)
    check_interpreter(manifest)
    update = manifest["kind"] == "update"
    exists = (prefix / "bin" / "assistant").exists()
    if update:
        check_update_base(manifest, prefix)
    elif exists and not force:
        raise SiteError(
            f"{prefix} already has an install; give another PREFIX, or --force to install over it"
        )
    if not update and not (prefix / "bin" / "python").exists():
        make_venv(prefix, HERE / "wheels")
    install_files(manifest, prefix)
    wheels = prefix / STATE / "wheels"
    say(f"installing {manifest['requirement']} and its dependencies (pip --no-index)")
    changed = [
        str(wheels / Path(e["path"]).name)
        for e in manifest["files"]
        if e["kind"] == "wheel" and e.get("carried", True)
    ]
    if update and changed:  # same version numbers can carry new code: reinstall what changed
        pip(prefix, "install", "--find-links", str(wheels), "--no-deps", "--force-reinstall", *changed)
    pip(prefix, "install", "--find-links", str(wheels), manifest["requirement"])
    # the manifest of the whole install: what the next update is checked against
    place(HERE / "manifest.json", prefix / STATE / "manifest.json")
    try:
        verify(manifest, prefix)
    except SiteError as exc:
        raise SiteError(f"installed into {prefix}, but its checks failed: {exc}") from None
    say(f"\ninstalled. Start the assistant with:\n\n    {prefix / 'bin' / 'assistant'}\n")


def assistant(prefix: Path, *args: str) -> str:
    env = dict(os.environ, ASSISTANT_HOME=str(prefix / "models"), HF_HUB_OFFLINE="1")
    return run([str(prefix / "bin" / "assistant"), *args], "assistant " + " ".join(args[:2]), env)


def verify(manifest: dict, prefix: Path) -> None:
    home = prefix / "models"
    for recipe in sorted((prefix / "recipes").glob("*.toml")):
        say(f"building {recipe.name} (skipped when its inputs are unchanged)")
        result = json.loads(assistant(prefix, "build", str(recipe), "--json").splitlines()[-1])
        say(f"{result['status']}: {Path(result['output']).name}; verify it")
        assistant(prefix, "verify", result["output"])
    for m in manifest["models"]:
        path = home / m["file"]
        if (path.with_name(path.name + ".lock.json")).is_file():
            say(f"verify {m['file']}")
            assistant(prefix, "verify", str(path))
        else:
            say(f"ok  {m['file']} (sha256 as in the manifest; it has no lock to verify against)")
    default = manifest["default_model"]
    say(f"one short answer from {default}")
    assistant(prefix, "ask", "--no-rag", "-n", "4", "-t", "0", "-m", default, "Hello")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="install.sh", description="Install the offline assistant from this bundle."
    )
    ap.add_argument("prefix", nargs="?", help="where to install (default: ./assistant next to the bundle)")
    ap.add_argument("--force", action="store_true", help="install a full bundle over an existing install")
    a = ap.parse_args(argv)
    prefix = Path(a.prefix).expanduser().resolve() if a.prefix else HERE.parent / "assistant"
    try:
        install(prefix, a.force)
    except SiteError as exc:
        print(f"install.sh: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("install.sh: interrupted; run it again to finish", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
