"""`models pull` never touches the network while offline, and says so clearly."""

from __future__ import annotations

import pytest

from assistant.errors import NetworkError, UsageError
from assistant.home import Home
from assistant.models.pull import choose_gguf, pull


def test_choose_gguf():
    assert choose_gguf(["README.md", "m.Q8_0.gguf"]) == "m.Q8_0.gguf"
    assert choose_gguf(["m.Q8_0.gguf", "m.Q4_K_M.gguf", "m.F16.gguf"]) == "m.Q4_K_M.gguf"
    with pytest.raises(UsageError, match="no .gguf"):
        choose_gguf(["config.json"])
    with pytest.raises(UsageError, match="several GGUF files"):
        choose_gguf(["a.F16.gguf", "a.BF16.gguf"])


def test_offline_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NetworkError, match="HF_HUB_OFFLINE is set and .* not in the local Hub cache"):
        pull("someone/some-model-GGUF", "model.Q4_K_M.gguf", Home(tmp_path / "home"))
    with pytest.raises(NetworkError, match="cannot be listed"):
        pull("someone/some-model-GGUF", None, Home(tmp_path / "home"))


def test_offline_from_cache(run_cli, home, tmp_path, default_model_path):
    """A file already in the Hub cache is copied into the home with HF_HUB_OFFLINE=1."""
    repo = tmp_path / "hf" / "hub" / "models--someone--tiny-GGUF"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (snap / "tiny.gguf").symlink_to(default_model_path)
    r = run_cli(
        "models",
        "pull",
        "someone/tiny-GGUF",
        "tiny.gguf",
        home=home,
        env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"},
    )
    assert r.returncode == 0, r.stderr
    dest = home / "tiny.gguf"
    assert dest.is_file() and not dest.is_symlink()
    assert dest.stat().st_size == default_model_path.stat().st_size
    assert "llama, Q8_0" in r.stdout


def test_bad_repo_id(tmp_path):
    with pytest.raises(UsageError, match="not a Hub repository id"):
        pull("just-a-name", None, Home(tmp_path))


def test_pull_cli_offline_message(run_cli, home):
    r = run_cli("models", "pull", "someone/x-GGUF", "x.gguf", home=home)
    assert r.returncode == 2
    assert "HF_HUB_OFFLINE" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("filename", [None, "x.Q4_K_M.gguf"])
def test_pull_without_network_is_one_line(run_cli, home, filename):
    """#12 item 17: no network (an unreachable local endpoint, never the real Hub) is one line, exit 2."""
    args = ["models", "pull", "someone/x-GGUF"] + ([filename] if filename else [])
    r = run_cli(*args, home=home, env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("Error: no network: could not reach the Hugging Face Hub for someone/x-GGUF")
    assert "HF_HUB_OFFLINE=1" in err and "model home" in err
