"""`assistant bundle` made here, installed as an air-gapped site would: inside a network namespace
(`unshare -n`), with no compiler or cmake on PATH, an empty HOME, pip's configuration hidden, into a
fresh prefix. Then the install answers, indexes, searches, verifies, opens the TUI; a tampered file
or another Python is refused before anything is installed; an update bundle with a changed adapter
rebuilds the model at the site."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "convert"))
import cvt_models

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
CHAT = "SmolLM2-135M-grounded.Q8_0.gguf"  # the default chat model
EMBED = "all-MiniLM-L6-v2.gguf"
RECIPE = """base = "{home}/sources/tiny-base"
quant = "Q8_0"

[[adapter]]
path = "{home}/sources/tiny-lora"
"""


def _namespaces() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"cannot make a network namespace here: {r.stderr.strip()}"


NO_NAMESPACE = _namespaces()


def site_path(tmp: Path) -> Path:
    """A PATH with only what a minimal site has: sh, dirname, env and python3 (no cc, no cmake)."""
    d = tmp / "site-bin"
    d.mkdir(exist_ok=True)
    for tool in ("sh", "dirname", "env"):
        target = shutil.which(tool)
        assert target, tool
        (d / tool).unlink(missing_ok=True)
        (d / tool).symlink_to(target)
    py = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (d / "python3").unlink(missing_ok=True)
    (d / "python3").symlink_to(py)
    return d


def offline(tmp: Path, *cmd: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run cmd as the site would: no network, nothing but site_path on PATH, empty HOME, no pip config."""
    home = tmp / "empty-home"
    home.mkdir(exist_ok=True)
    env = {"PATH": str(site_path(tmp)), "HOME": str(home), "PIP_CONFIG_FILE": "/dev/null", "LANG": "C.UTF-8"}
    return subprocess.run(
        ["unshare", "-n", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp,
    )


def bundle_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "assistant", "--home", str(home), "bundle", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A model home like a team's: the default models, a small knowledge base, a tiny base model
    and LoRA adapter in sources/, and a recipe that merges them."""
    tmp = tmp_path_factory.mktemp("bundle")
    home = tmp / "home"
    home.mkdir()
    for name in (CHAT, CHAT + ".lock.json", EMBED, EMBED + ".lock.json"):
        (home / name).symlink_to(MODELS / name)
    base = cvt_models.make_decoder(home / "sources" / "tiny-base")
    cvt_models.make_adapter(home / "sources" / "tiny-lora", base, targets=["q_proj", "v_proj"], seed=1)
    docs = tmp / "docs"
    docs.mkdir()
    (docs / "policy.txt").write_text("Visitors to the Quillon lab must sign the blue ledger at the gate.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    r = subprocess.run(
        [sys.executable, "-m", "assistant", "--home", str(home), "index", "add", str(docs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    recipes = tmp / "recipes"
    recipes.mkdir()
    (recipes / "tiny.toml").write_text(RECIPE)
    return {"tmp": tmp, "home": home, "recipe": recipes / "tiny.toml", "base": base}


@pytest.fixture(scope="module")
def site(project: dict[str, Any]) -> dict[str, object]:
    """The full bundle, made here and installed offline into a fresh prefix."""
    if NO_NAMESPACE:
        pytest.skip(NO_NAMESPACE)
    tmp = project["tmp"]
    made = bundle_cli(
        project["home"], "-o", str(tmp / "b1"), "--kb", "default", "--recipe", str(project["recipe"])
    )
    assert made.returncode == 0, made.stderr
    t0 = time.monotonic()
    inst = offline(tmp, str(tmp / "b1" / "install.sh"), str(tmp / "site"))
    return {"bundle": tmp / "b1", "prefix": tmp / "site", "install": inst, "seconds": time.monotonic() - t0}


def test_the_closure_follows_extras_and_leaves_test_tools_out() -> None:
    from assistant.bundle.wheels import normalize, runtime_closure

    names = {normalize(d.metadata["Name"]) for d in runtime_closure()}
    assert {"edge-assistant", "llama-cpp-python", "textual", "numpy", "sqlite-vec"} <= names
    assert "linkify-it-py" in names  # textual needs markdown-it-py[linkify]: an extra's requirement
    assert not names & {"pytest", "ruff", "mypy", "import-linter"}


def test_install_runs_offline_verifies_and_says_how_to_start(site: dict[str, object]) -> None:
    inst = site["install"]
    assert isinstance(inst, subprocess.CompletedProcess)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    prefix = site["prefix"]
    assert isinstance(prefix, Path)
    out = inst.stdout
    assert "checking" in out and "files against manifest.json" in out
    assert f"verify {EMBED}" in out and f"verify {CHAT}" in out
    assert "built: tiny.gguf; verify it" in out  # the recipe was rebuilt at the site
    assert str(prefix / "bin" / "assistant") in out.strip().splitlines()[-1]
    assert (prefix / "models" / CHAT).is_file() and (prefix / "models" / "knowledge" / "default.db").is_file()


def test_the_install_answers_indexes_searches_and_verifies_offline(
    site: dict[str, object], project: dict[str, Any]
) -> None:
    prefix, tmp = site["prefix"], project["tmp"]
    assert isinstance(prefix, Path)
    exe = str(prefix / "bin" / "assistant")
    # its own model home (PREFIX/models), no ASSISTANT_HOME needed
    r = offline(tmp, exe, "search", "who signs the ledger")
    assert r.returncode == 0 and "policy.txt" in r.stdout, r.stdout + r.stderr  # the carried knowledge base
    docs = tmp / "site-docs"
    docs.mkdir(exist_ok=True)
    (docs / "router.txt").write_text(
        "The Zorblax router resets when the red button is held for nine seconds.\n"
    )
    r = offline(tmp, exe, "index", "add", str(docs), "--kb", "site")
    assert r.returncode == 0, r.stderr
    r = offline(tmp, exe, "search", "--kb", "site", "reset the router")
    assert r.returncode == 0 and "router.txt" in r.stdout, r.stdout + r.stderr
    r = offline(tmp, exe, "ask", "--kb", "site", "-t", "0", "-n", "24", "How do I reset the Zorblax router?")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    assert "router.txt" in r.stdout  # grounded: the source is cited under the answer
    r = offline(tmp, exe, "verify", str(prefix / "models" / "tiny.gguf"))
    assert r.returncode == 0 and "all checks passed" in r.stdout, r.stdout + r.stderr


def test_the_tui_starts_from_the_install(site: dict[str, object], project: dict[str, Any]) -> None:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for this test (test.sh installs it where apt-get can)")
    prefix, tmp = site["prefix"], project["tmp"]
    assert isinstance(prefix, Path)
    sock = f"bundle-{os.getpid()}"
    path = site_path(tmp)
    cmd = f"unshare -n env -i PATH={path} HOME={tmp / 'empty-home'} TERM=xterm-256color {prefix / 'bin' / 'assistant'}"
    subprocess.run(
        ["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", cmd],
        check=True,
    )
    try:
        deadline, screen = time.monotonic() + 120, ""
        while time.monotonic() < deadline and "Ready: SmolLM2" not in screen and "Could not" not in screen:
            time.sleep(0.2)
            screen = subprocess.run(
                ["tmux", "-L", sock, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True
            ).stdout
        assert "Ready: SmolLM2" in screen, screen  # the model loaded: the app is up and can answer
        subprocess.run(["tmux", "-L", sock, "send-keys", "-t", "t", "C-q"], check=True)
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)


def _copy_bundle(src: Path, dest: Path) -> Path:
    """A copy sharing the big files (hard links); a file to tamper with is replaced, never edited."""
    shutil.copytree(src, dest, copy_function=os.link)
    return dest


@pytest.mark.parametrize("victim", ["wheel", "model"])
def test_a_flipped_byte_is_refused_before_anything_is_installed(
    site: dict[str, object], project: dict[str, Any], victim: str
) -> None:
    bundle = site["bundle"]
    assert isinstance(bundle, Path)
    tmp = project["tmp"]
    copy = _copy_bundle(bundle, tmp / f"tampered-{victim}")
    manifest = json.loads((copy / "manifest.json").read_text())
    entry = next(e for e in manifest["files"] if e["kind"] == victim)
    target = copy / entry["path"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.unlink()  # break the hard link: the original bundle stays intact
    target.write_bytes(bytes(data))
    r = offline(tmp, str(copy / "install.sh"), str(tmp / f"never-{victim}"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and entry["path"] in r.stderr and "nothing was installed" in r.stderr, (
        r.stderr
    )
    assert not (tmp / f"never-{victim}").exists()


def test_a_bundle_for_another_python_is_refused_in_one_line(
    site: dict[str, object], project: dict[str, Any]
) -> None:
    bundle = site["bundle"]
    assert isinstance(bundle, Path)
    tmp = project["tmp"]
    copy = _copy_bundle(bundle, tmp / "other-python")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["python"]["version"] = "3.99"
    (copy / "manifest.json").unlink()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    r = offline(tmp, str(copy / "install.sh"), str(tmp / "never-py"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "made for cpython 3.99" in r.stderr, r.stderr
    assert not (tmp / "never-py").exists()


def test_an_update_bundle_carries_the_changed_adapter_and_the_site_rebuilds(
    site: dict[str, object], project: dict[str, Any]
) -> None:
    bundle, prefix = site["bundle"], site["prefix"]
    assert isinstance(bundle, Path) and isinstance(prefix, Path)
    tmp, home = project["tmp"], project["home"]
    assert site["install"].returncode == 0  # type: ignore[attr-defined]
    lock = prefix / "models" / "tiny.gguf.lock.json"
    before = json.loads(lock.read_text())
    # the team trains again: same adapter directory, new weights
    shutil.rmtree(home / "sources" / "tiny-lora")
    cvt_models.make_adapter(
        home / "sources" / "tiny-lora", project["base"], targets=["q_proj", "v_proj"], seed=7
    )
    made = bundle_cli(
        home,
        "-o",
        str(tmp / "u1"),
        "--kb",
        "default",
        "--recipe",
        str(project["recipe"]),
        "--update-from",
        str(bundle / "manifest.json"),
    )
    assert made.returncode == 0, made.stderr
    manifest = json.loads((tmp / "u1" / "manifest.json").read_text())
    carried = sorted(e["path"] for e in manifest["files"] if e.get("carried", True))
    assert manifest["kind"] == "update"
    assert carried == ["home/sources/tiny-lora/adapter_model.safetensors", "install.py", "install.sh"], (
        carried
    )
    r = offline(tmp, str(tmp / "u1" / "install.sh"), str(prefix))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "built: tiny.gguf; verify it" in r.stdout
    after = json.loads(lock.read_text())
    assert after["output"]["sha256"] != before["output"]["sha256"]
    r = offline(tmp, str(prefix / "bin" / "assistant"), "verify", str(prefix / "models" / "tiny.gguf"))
    assert r.returncode == 0 and "all checks passed" in r.stdout, r.stdout + r.stderr
