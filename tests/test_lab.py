"""`make lab`: JupyterLab at the repository root, the notebooks' .py files open as notebooks (jupytext).

Starts the server with the exact arguments of `make lab` and asks its REST API what a browser would get."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOKEN = "stars-test-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_make_lab_serves_the_repository_root_and_opens_py_files_as_notebooks(tmp_path):
    command = subprocess.run(["make", "-n", "-s", "lab"], cwd=REPO, capture_output=True, text=True, check=True)
    args = shlex.split(command.stdout.strip().splitlines()[-1])
    assert args[1] == "lab" and Path(args[0]).name == "jupyter"
    args[0] = str(Path(sys.executable).parent / "jupyter")  # the environment running the tests
    port = _free_port()
    env = {**os.environ, "JUPYTER_PLATFORM_DIRS": "1", "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = subprocess.Popen(
        [*args, "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _get(port, "/api/status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"jupyter lab did not start: {server.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.5)
        settings = _get(port, "/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
        # overrides.json becomes the setting's default (what the browser uses unless the user changed it)
        assert settings["schema"]["properties"]["defaultViewers"]["default"] == {"python": "Jupytext Notebook"}
        assert "defaultViewers" not in settings["settings"]  # not forced over the user's own choice
        root = {item["name"] for item in _get(port, "/api/contents")["content"]}
        assert {"notebooks", "results", "stars", "README.md"} <= root
        notebook = _get(port, "/api/contents/notebooks/table09_batch_size.py?type=notebook&content=1")
        assert notebook["type"] == "notebook"
        cells = notebook["content"]["cells"]
        assert cells[0]["cell_type"] == "markdown"
        assert any("parameters" in cell["metadata"].get("tags", []) for cell in cells)
        assert notebook["content"]["metadata"]["kernelspec"]["name"] == "python3"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
