"""End-to-end: the Embedding map with the user's own cohort, in headless Chromium (as tests/test_e2e_browser.py).

An `s2v embed`-like per-night Parquet and a metadata CSV go through the page's real file inputs; the map and the
site-shortcut probe must appear. The screenshot goes to $S2V_SCREENSHOTS (default: the test's temporary folder).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

# the server, browser and label helper of the other end-to-end tests (pytest picks up imported fixtures)
from tests.test_e2e_browser import _click_label, driver, pytestmark, server  # noqa: F401
from tests.test_embedding_map_own import nights_table


def _wait_for(driver, text: str, timeout: float = 120.0) -> str:  # noqa: F811
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    while time.time() < deadline:
        body = driver.find_element(By.TAG_NAME, "body").text
        if text in body:
            return body
        time.sleep(0.5)
    raise AssertionError(f"{text!r} never appeared; the page shows: {body[-1500:]}")


def test_upload_an_embed_parquet_and_see_the_map_and_the_probe(server, driver, tmp_path):  # noqa: F811
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
