"""Offline guarantee: `assistant ask` answers with every outbound connection failing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

GUARD = textwrap.dedent(
    """
    import os, socket
    _log = os.environ["SOCKET_LOG"]

    def _refuse(*args, **kwargs):
        with open(_log, "a") as fh:
            fh.write(repr(args[:2]) + "\\n")
        raise OSError("network disabled by test")

    socket.socket.connect = _refuse
    socket.socket.connect_ex = _refuse
    socket.create_connection = _refuse
    socket.getaddrinfo = _refuse
    """
)


def test_ask_opens_no_socket(tmp_path, home_with_default):
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "sockets.log"
    env = {
        "PATH": "/usr/bin:/bin",
        "ASSISTANT_HOME": str(home_with_default),
        "PYTHONPATH": str(guard_dir),
        "SOCKET_LOG": str(log),
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "assistant", "ask", "--json", "-n", "8", "Hello"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"]
    assert not log.exists() or log.read_text() == ""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare not installed")
def test_ask_in_a_network_namespace_without_interfaces(tmp_path, home_with_default):
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("user/network namespaces are not permitted here")
    proc = subprocess.run(
        ["unshare", "-rn", sys.executable, "-m", "assistant", "ask", "--json", "-n", "8", "Hello"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "ASSISTANT_HOME": str(home_with_default), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"]
