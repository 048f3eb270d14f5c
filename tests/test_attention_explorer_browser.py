"""Notebook 05's attention explorer in a real browser: JupyterLab headless, Debian's Chromium driven by Playwright.

The test runs notebook 05 (``interactive=True``, a tiny random encoder, 40 phantoms) in JupyterLab, moves the layer,
head and image controls, and checks that the displayed attention image changes each time and that no widget error
or traceback appears. A screenshot is kept in ``runs/test_artifacts/attention_explorer.png``.

It needs the system browser (``chromium``; ``make setup`` installs Debian's package where it can) and Playwright,
which drives that browser without downloading one. Where either is missing the test is skipped, saying which.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACT = REPO / "runs" / "test_artifacts" / "attention_explorer.png"
CHROMIUM = next((p for p in (os.environ.get("RADDINO_CHROMIUM", ""), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {server.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {timeout:.0f} s")


def _explorer_notebook(tmp_path: Path) -> Path:
    """Notebook 05 with its parameters set for a tiny run and the explorer on."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from raddino_lib.data.phantoms import generate
    from raddino_lib.probe.encoders import make_random_encoder

    manifest = generate(tmp_path / "data", n=40, size=64, seed=0, balanced=True)
    encoder = make_random_encoder(tmp_path / "random.safetensors", img_size=64, depth=2, seed=0)
    nb = load_notebook_node(str(REPO / "notebooks" / "05_attention_maps.ipynb"))
    nb = parameterize_notebook(nb, {"output_dir": str(tmp_path / "out"), "manifest": str(manifest),
                                    "random_encoder": str(encoder), "supervised_steps": 0, "n_boot": 10,
                                    "n_images": 2, "interactive": True})
    path = tmp_path / "explorer.ipynb"
    nbformat.write(nb, path)
    return path


def _image_source(page) -> str:
    return page.locator(".widget-output img").first.get_attribute("src") or ""


def _wait_for_new_image(page, before: str, what: str, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = _image_source(page)
        if now and now != before:
            return now
        page.wait_for_timeout(250)
    raise AssertionError(f"the attention image did not change after moving the {what} control")


def test_attention_explorer_renders_and_redraws_in_chromium(tmp_path):
    if CHROMIUM is None:
        pytest.skip("no system Chromium (apt-get install chromium, or set RADDINO_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install '.[test]')")
    notebook = _explorer_notebook(tmp_path)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter_config"), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "jupyterlab.log", "w"))
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", server)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            # the status bar reads "<kernel> | Idle" once the kernel is up (before that a run asks for a kernel)
            page.wait_for_function("document.querySelector('.jp-StatusBar-Widget')?.innerText.includes('| Idle')",
                                   timeout=120_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            kernel_dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
            with contextlib.suppress(sync_api.TimeoutError):
                kernel_dialog.wait_for(timeout=3_000)
                kernel_dialog.locator("button.jp-mod-accept").click()
            page.wait_for_selector(".widget-output img", timeout=300_000)
            first = _image_source(page)
            assert first.startswith("data:image/png"), first[:60]

            layer = page.locator(".widget-slider", has=page.locator("label", has_text="layer")).locator(".noUi-handle")
            layer.focus()
            layer.press("ArrowLeft")
            after_layer = _wait_for_new_image(page, first, "layer")

            head = page.locator(".widget-dropdown", has=page.locator("label", has_text="head")).locator("select")
            head.select_option("0")
            after_head = _wait_for_new_image(page, after_layer, "head")

            image = page.locator(".widget-slider", has=page.locator("label", has_text="image")).locator(".noUi-handle")
            image.focus()
            image.press("ArrowRight")
            _wait_for_new_image(page, after_head, "image")

            page.locator(".widget-vbox", has=page.locator(".widget-output")).first.scroll_into_view_if_needed()
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACT), full_page=True)
            text = page.locator(".jp-Notebook").inner_text()
            assert "Error displaying widget" not in text and "Traceback" not in text, text[-2000:]
            assert not errors, errors
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
