"""End-to-end: the Embedding map with the user's own cohort, in headless Chromium (as tests/test_e2e_browser.py).

An `s2v embed`-like per-night Parquet and a metadata CSV go through the page's real file inputs; the map and the
site-shortcut probe must appear. The screenshot goes to $S2V_SCREENSHOTS (default: the test's temporary folder).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_embedding_map_own import nights_table

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(DRIVER).exists()), reason="Debian chromium/chromium-driver not installed"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("selenium")
    cache = tmp_path_factory.mktemp("cache")
    port = _free_port()
    env = {**os.environ, "S2V_CACHE": str(cache)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("streamlit did not start")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def driver():
    sys.path.insert(0, str(ROOT / "scripts"))
    from screenshots import make_driver

    d = make_driver(1400, 1500)
    yield d
    d.quit()


def _click_label(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    for el in driver.find_elements(By.CSS_SELECTOR, "label"):
        if el.text.strip() == text:
            el.click()
            return
    raise AssertionError(f"no control labelled {text!r}: {[e.text for e in driver.find_elements(By.CSS_SELECTOR, 'label')]}")


def _wait_for(driver, text: str, timeout: float = 120.0) -> str:
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    while time.time() < deadline:
        body = driver.find_element(By.TAG_NAME, "body").text
        if text in body:
            return body
        time.sleep(0.5)
    raise AssertionError(f"{text!r} never appeared; the page shows: {body[-1500:]}")


def test_upload_an_embed_parquet_and_see_the_map_and_the_probe(server, driver, tmp_path):
    from screenshots import wait_idle
    from selenium.webdriver.common.by import By

    parquet, meta = tmp_path / "cohort_nights.parquet", tmp_path / "metadata.csv"
    table = nights_table(n_subjects=30, d=16, shift=1.5)
    table.to_parquet(parquet, index=False)
    pd.DataFrame({"night": table["night"][:54], "scanner": ["A", "B", "C"] * 18}).to_csv(meta, index=False)

    driver.get(server + "/embedding_map")
    wait_idle(driver, timeout=120)
    _click_label(driver, "PCA")  # no numba compilation in a test; the projection stays for the own cohort
    wait_idle(driver, timeout=60)
    _click_label(driver, "Upload s2v embed output")
    wait_idle(driver, timeout=60)
    inputs = driver.find_elements(By.CSS_SELECTOR, 'input[type="file"]')
    assert len(inputs) == 2, "the Parquet and the metadata uploaders"
    inputs[0].send_keys(str(parquet))
    _wait_for(driver, "balanced accuracy (lower is better)")
    wait_idle(driver, timeout=120)
    driver.find_elements(By.CSS_SELECTOR, 'input[type="file"]')[1].send_keys(str(meta))
    body = _wait_for(driver, "54 of 60 nights matched")
    wait_idle(driver, timeout=120)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "the uploaded cohort_nights.parquet" in body and "PCA of 60 nights" in body
    assert "Site shortcut on your cohort" in body and "Chance" in body and "0.33" in body
    points = driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer .point")
    assert len(points) == 60, len(points)
    shots = Path(os.environ.get("S2V_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(shots / "e2e-embedding-map-own-cohort.png"))
