"""``afford serve``: the handlers on the demo models, and the real page in headless Chromium
(selenium + Debian's chromium-driver): upload the coffee photo, run, the heatmap appears."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "export"))
from coffee import coffee_224  # noqa: E402

from afford.data.io import write_image  # noqa: E402
from afford.errors import UsageError  # noqa: E402
from afford.models import sample_image  # noqa: E402


@pytest.fixture(scope="module")
def models():
    pytest.importorskip("gradio")
    from afford.serve.app import load_models

    return load_models(device="cpu")


def test_handlers_on_demo_models(models):
    from afford.serve import handlers

    g, c = models
    overlay, js = handlers.ground(g, coffee_224(), g.actions[0])
    assert overlay.shape == (224, 224, 3) and js["action"] == g.actions[0]
    mug, jug = str(sample_image("mug.png")), str(sample_image("jug.png"))
    overlay, js = handlers.correspond(c, mug, jug, c.functions[0], "points", "60,60; 70,64")
    assert overlay.ndim == 3 and len(js["target_points"]) == 2
    outs, js = handlers.transfer_tab(c, g, mug, [jug, mug], c.functions[0], None, g.actions[0])
    assert len(outs) == 2 and len(js["targets"]) == 2
    with pytest.raises(UsageError, match="upload an image"):
        handlers.ground(g, None, g.actions[0])
    with pytest.raises(UsageError, match="row,col"):
        handlers.parse_points("1,2; x")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc, timeout: float = 180) -> None:
    import urllib.request

    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"afford serve exited: {proc.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout}s")


@pytest.mark.slow
def test_browser_grounding_tab(tmp_path):
    pytest.importorskip("gradio")
    webdriver = pytest.importorskip("selenium.webdriver")
    driver_bin = shutil.which("chromedriver")
    chromium = shutil.which("chromium")
    if not driver_bin or not chromium:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = write_image(tmp_path / "coffee.jpg", coffee_224())
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "afford.cli", "serve", "--port", str(port), "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    url = f"http://127.0.0.1:{port}/"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1400,1000"):  # fmt: skip
        opts.add_argument(a)
    driver = None
    try:
        _wait_http(url, proc)
        service = webdriver.ChromeService(executable_path=driver_bin)
        driver = webdriver.Chrome(options=opts, service=service)
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        upload = wait.until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#ground-image input[type=file]")
        )
        upload.send_keys(str(photo))
        time.sleep(2)
        driver.find_element(By.CSS_SELECTOR, "#ground-run").click()
        img = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#ground-overlay img"))
        wait.until(lambda d: img.get_attribute("src"))
        time.sleep(1)
        png = img.screenshot_as_png
        from io import BytesIO

        from PIL import Image

        pix = np.asarray(Image.open(BytesIO(png)).convert("RGB"))
        assert pix.size > 0 and pix.std() > 5  # a picture, not a blank box
        shot = os.environ.get("AFFORD_SERVE_SCREENSHOT")  # docs/images/serve.png was made so
        if shot:
            driver.save_screenshot(shot)
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
