"""End-to-end: the Hypnogram page's peers (YASA and sleepecg) in a real browser.

Skipped when Chromium, chromedriver, selenium or YASA are not installed. The screenshot goes to
$S2V_SCREENSHOTS (default: the test's temporary folder).
"""

from __future__ import annotations

import time

import pytest

from tests.test_e2e_browser import ROOT, _click_label, driver, pytestmark, server, shots  # noqa: F401


def test_peers_under_ours_on_the_sample_night(server, driver, shots):  # noqa: F811
    pytest.importorskip("yasa")
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from screenshots import save_section, scroll_to_heading, wait_idle
    from selenium.webdriver.common.by import By

    driver.get(server + "/hypnogram")
    wait_idle(driver, timeout=180)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "Peers on the same epochs" in body and "Switch on to stage this night" in body
    _click_label(driver, "Compare with YASA and sleepecg")
    deadline = time.time() + 240
    while time.time() < deadline and "ours vs" not in driver.page_source:
        time.sleep(1.0)
    wait_idle(driver, timeout=240)
    heading = scroll_to_heading(driver, "Peers on the same epochs")
    body = driver.find_element(By.TAG_NAME, "body").text
    # the stacked hypnograms are SVG: ours, YASA (5 stages), sleepecg (W/NREM/REM), the expert
    for title in ("ours", "YASA", "sleepecg (W/NREM/REM)", "expert"):
        assert title in body, title
    assert "gives no stages" not in body  # the sample night has EEG at >= 80 Hz and an ECG
    save_section(driver, heading, shots / "hypnogram_peers.png", until="Agreement with the expert")
    assert (shots / "hypnogram_peers.png").stat().st_size > 10_000
