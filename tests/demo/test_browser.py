"""cmsa-demo in a real browser: headless Chromium (Debian's package) driven by Playwright against
the app started on 127.0.0.1 in a subprocess.

`CMSA_DEMO_MODEL=saved_models/shapes` runs it on another export (default: the tiny test export);
`CMSA_DEMO_SCREENSHOT=docs/images/demo.png` also writes the page's screenshot there (the README's).
"""

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urljoin

import numpy as np
import pytest
from PIL import Image

from cmsa_tf import predict
from cmsa_tf.demo import examples as examples_lib
from tests import helpers

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOW_TO_GET_CHROMIUM = (
    "install Debian's chromium: `sudo apt-get install -y chromium chromium-driver` "
    "(.ci/run does it), and `pip install -e '.[test]'` for Playwright"
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]


def _needs_browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: {HOW_TO_GET_CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip(f"Playwright is not installed: {HOW_TO_GET_CHROMIUM}")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tiny_export, tmp_path):
    """cmsa-demo in a subprocess; stopped at the end."""
    _needs_browser()
    model = os.environ.get("CMSA_DEMO_MODEL", tiny_export["base"])
    port = _free_port()
    log = open(tmp_path / "server.log", "w+")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", GRADIO_ANALYTICS_ENABLED="False")
    process = subprocess.Popen(
        [sys.executable, "-m", "cmsa_tf.demo", "--model", model, "--port", str(port)],
        cwd=helpers.REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240  # TF and Gradio imports, load, warm-up
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            process.kill()
            pytest.fail(f"cmsa-demo did not start:\n{log.read()[-3000:]}")
        time.sleep(0.5)
    try:
        yield {"url": url, "model": model, "process": process}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def test_upload_type_submit_and_read_the_mask_back(server, tmp_path):
    from playwright.sync_api import sync_playwright

    (image_path, expression), *_ = examples_lib.write_examples(tmp_path / "shapes", count=1)
    with open(image_path, "rb") as f:
        image_bytes = f.read()
    predictor = predict.SavedModelPredictor(predict.find_version_dir(server["model"]))
    want = predictor.predict(image_bytes, expression)["mask"].astype(bool)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(90_000)
            page.goto(server["url"])
            page.locator("#input-image input[type=file]").set_input_files(image_path)
            page.locator("#input-image img").first.wait_for()
            page.locator("#expressions textarea").fill(expression)
            page.locator("#segment").click()
            page.get_by_text("Latency:").wait_for()
            source = page.locator("#mask img").first.get_attribute("src")
            answer = page.request.get(urljoin(server["url"], source))
            assert answer.ok, answer.status
            got = np.asarray(Image.open(io.BytesIO(answer.body())).convert("L")) > 127
            assert got.shape == want.shape
            assert _iou(got, want) >= 0.99
            page.wait_for_timeout(500)  # the galleries' images
            shot = page.screenshot(full_page=True)
            (tmp_path / "demo.png").write_bytes(shot)
            if os.environ.get("CMSA_DEMO_SCREENSHOT"):
                with open(os.environ["CMSA_DEMO_SCREENSHOT"], "wb") as f:
                    f.write(shot)

            # Bad input through the page: no expression. A clear message; the server keeps going.
            page.locator("#expressions textarea").fill("   ")
            page.locator("#segment").click()
            page.get_by_text("Type an expression").first.wait_for()
        finally:
            browser.close()
    assert server["process"].poll() is None
    with urllib.request.urlopen(server["url"], timeout=10) as response:
        assert response.status == 200
