"""The package as the serving image installs it: a wheel built from what docker/serve.Dockerfile
copies, installed (not editable), serves the search page over HTTP.

Every other test imports smar from the checkout; only this one sees what a wheel leaves out.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time

import httpx

from tests.conftest import PROJECT

DOCKERFILE = PROJECT / "docker" / "serve.Dockerfile"
# Run from the installed copy: the app with a follower that never starts (the page needs no model).
SERVE_PAGE = """
import sys
sys.path.insert(0, sys.argv[1])
import smar, uvicorn
assert smar.__file__.startswith(sys.argv[1]), smar.__file__
from smar.core.config import ServeConfig
from smar.serving.app import create_app
from smar.serving.follower import AliasFollower
settings = ServeConfig()
app = create_app(AliasFollower("no-such-model", settings.alias, settings.poll_seconds), settings)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def copied_by_the_image() -> list[str]:
    """The repository paths the serving image copies before its `pip install .`."""
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if match := re.match(r"COPY\s+(?!--)(.+)\s+\S+$", line.strip()):
            sources += match.group(1).split()
    assert sources, f"{DOCKERFILE}: no COPY lines"
    return sources


def test_the_installed_wheel_serves_the_search_page(tmp_path):
    source = tmp_path / "source"  # the build writes build/ and *.egg-info beside its sources
    source.mkdir()
    for name in copied_by_the_image():
        if (PROJECT / name).is_dir():
            shutil.copytree(PROJECT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(PROJECT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", tmp_path / "wheels", source],
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp_path / "wheels").glob("smar-*.whl")
    installed = tmp_path / "installed"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "-q", "--target", installed, wheel],
        check=True,
        capture_output=True,
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE_PAGE, str(installed), str(port)],
        env=environment,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        page = wait_for_page(f"http://127.0.0.1:{port}/", server)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert page.status_code == 200, output
    assert '<form id="search"' in page.text and "/search" in page.text


def wait_for_page(url: str, server: subprocess.Popen, seconds: float = 60) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the installed app exited:\n{server.communicate()[0]}"
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {seconds} s")
