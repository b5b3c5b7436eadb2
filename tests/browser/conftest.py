"""A real JupyterLab server on loopback (serving Notebook 7 too), and Debian's headless Chromium
driven by Playwright.

Each test writes its notebook into the server's root, opens it (a fresh kernel), runs the
cells one by one as a user would (click, Shift+Enter) and asserts on what the page shows.
A screenshot of every step is kept under ``tmp/artifacts/browser/<test>/`` (or under
``$FAIRING_TEST_ARTIFACTS``). Chromium is Debian's ``/usr/bin/chromium``: no browser is
downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

# The cluster's fixtures, for the notebooks run on the cluster (marked e2e).
from tests.e2e.conftest import api_client, core_v1, kubeconfig, namespace, registry_address  # noqa: F401
# A plain-HTTP docker-registry on loopback, for the upload progress.
from tests.integration.conftest import registry  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "fairing-browser-tests"

# JupyterLab user settings: every cell stays in the page (no virtual scrolling), no news or update checks.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    root: Path
    tmp: Path  # the kernels' TMPDIR: local jobs put their working directories here

    def api(self, path: str):
        request = urllib.request.Request(f"{self.url}/api/{path}", headers={"Authorization": f"token {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def job_dirs(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir() if p.name.startswith("fairing-local-"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 with its own settings, runtime and temp directories."""
    base = tmp_path_factory.mktemp("lab")
    root, tmp, runtime, settings = (base / n for n in ("root", "tmp", "runtime", "settings"))
    for d in (root, tmp, runtime, settings):
        d.mkdir()
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    port = _free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"), "TMPDIR": str(tmp),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = (base / "jupyterlab.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--ServerApp.terminals_enabled=False"],
        env=env, cwd=str(root), stdout=log, stderr=subprocess.STDOUT)
    handle = Lab(f"http://127.0.0.1:{port}", root, tmp)
    try:
        # Its start is not what is tested: generous, since the parallel phase may start
        # several servers at once beside the cluster's pods on 2 cores.
        deadline = time.time() + 300
        while True:
            try:
                handle.api("status")
                break
            except OSError:
                assert server.poll() is None, f"JupyterLab exited; see {base / 'jupyterlab.log'}"
                assert time.time() < deadline, f"JupyterLab did not answer in 300 s; see {base / 'jupyterlab.log'}"
                time.sleep(0.3)
        yield handle
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian's chromium is needed: apt-get install chromium"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts(request) -> Path:
    base = Path(os.environ.get("FAIRING_TEST_ARTIFACTS", ROOT / "tmp" / "artifacts")) / "browser"
    path = base / re.sub(r"[^\w.-]+", "_", request.node.name)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class Notebook:
    """A notebook open in JupyterLab, driven like a user would."""

    def __init__(self, page, lab: Lab, artifacts: Path) -> None:
        self.page = page
        self.lab = lab
        self.artifacts = artifacts
        self.steps = 0

    def open(self, name: str, cells: int, *, app: str = "lab") -> "Notebook":
        """Open the notebook in JupyterLab (``app="lab"``) or Notebook 7 (``app="notebook"``) and
        wait until its ``cells`` cells show and its new kernel is idle."""
        path = {"lab": f"lab/tree/{name}?token={TOKEN}&reset", "notebook": f"notebooks/{name}?token={TOKEN}"}[app]
        self.page.goto(f"{self.lab.url}/{path}")
        self.page.wait_for_function(
            "n => document.querySelectorAll('.jp-Notebook .jp-Cell').length === n", arg=cells, timeout=120_000)
        deadline = time.time() + 120
        while not any(s["path"] == name and s["kernel"]["execution_state"] == "idle" for s in self.lab.api("sessions")):
            assert time.time() < deadline, f"the kernel of {name} did not become idle"
            time.sleep(0.3)
        self.shot("opened")
        return self

    def cell(self, i: int):
        return self.page.locator(".jp-Notebook .jp-Cell").nth(i)

    def output(self, i: int):
        return self.cell(i).locator(".jp-OutputArea")

    def prompt(self, i: int) -> str:
        return self.cell(i).locator(".jp-InputArea-prompt").inner_text().strip()

    def start(self, i: int) -> None:
        """Run cell ``i`` (click into it, Shift+Enter) without waiting for it to end."""
        self.cell(i).locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Shift+Enter")
        self.page.wait_for_function(
            "i => /\\[(\\*|\\d+)\\]/.test(document.querySelectorAll('.jp-Notebook .jp-Cell')[i]"
            ".querySelector('.jp-InputArea-prompt').textContent)", arg=i, timeout=30_000)

    def wait(self, i: int, timeout: float = 300) -> None:
        self.page.wait_for_function(
            "i => /\\[\\d+\\]/.test(document.querySelectorAll('.jp-Notebook .jp-Cell')[i]"
            ".querySelector('.jp-InputArea-prompt').textContent)", arg=i, timeout=timeout * 1000)

    def is_code(self, i: int) -> bool:
        return "jp-CodeCell" in (self.cell(i).get_attribute("class") or "")

    def run(self, i: int, timeout: float = 300) -> str:
        """Run code cell ``i`` and wait for it to end; return what its output shows."""
        self.start(i)
        self.wait(i, timeout)
        self.shot(f"cell{i}")
        return self.output(i).inner_text()

    def running(self, i: int) -> bool:
        return "*" in self.prompt(i)

    def interrupt(self) -> None:
        self.page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:interrupt-kernel']").click()

    def shot(self, label: str) -> Path:
        self.steps += 1
        path = self.artifacts / f"{self.steps:02d}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def notebook(lab, browser, artifacts):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    try:
        yield Notebook(page, lab, artifacts)
    finally:
        context.close()


@pytest.fixture(scope="module")
def loopback_base_image(registry):
    """The test base image in the loopback registry, for the upload progress."""
    from tests.services.base_image import push_base_image

    return push_base_image(registry.address)
