"""End-to-end: `streamlit run` on localhost driven by headless Chromium (Debian chromium + chromedriver).

Skipped when Chromium, chromedriver or selenium are not installed (`.ci/run` installs them).
Screenshots go to $S2V_SCREENSHOTS (default: the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
    url = f"http://127.0.0.1:{port}"
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
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def driver():
    sys.path.insert(0, str(ROOT / "scripts"))
    from screenshots import make_driver

    d = make_driver(1400, 1400)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("S2V_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _click_label(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    for el in driver.find_elements(By.CSS_SELECTOR, "label"):
        if el.text.strip() == text:
            el.click()
            return
    raise AssertionError(f"no control labelled {text!r}")


def test_deep_link_as_first_request_uses_the_apps_navigation(server, driver):
    """Runs first on a fresh server: /hypnogram before anyone opened / (legacy pages/ mode)."""
    from screenshots import wait_idle
    from selenium.webdriver.common.by import By

    driver.get(server + "/hypnogram")
    wait_idle(driver, timeout=120)
    time.sleep(1.0)
    nav = [e.text.split("\n")[-1] for e in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')]
    assert nav[:2] == ["Night", "Hypnogram"] and "common" not in nav and "Embedding map" in nav
    assert [e.text for e in driver.find_elements(By.TAG_NAME, "h1")][:1] == ["Hypnogram"]


def test_night_page_excerpt_and_upload(server, driver, shots, tmp_path):
    from screenshots import wait_idle
    from selenium.webdriver.common.by import By

    driver.get(server)
    wait_idle(driver, timeout=120)
    _click_label(driver, "Shipped 1-h excerpt")
    wait_idle(driver, timeout=120)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "120" in body and "9 of 9" in body and "Channel to modality mapping" in body
    driver.save_screenshot(str(shots / "e2e-night-excerpt.png"))

    # upload a generated EDF through the real file input
    from s2v_core.synth.cohort import generate_cohort

    frame = generate_cohort(1, tmp_path / "up", seed=11, hours=0.25, sites=["home_test"])
    edf = tmp_path / "up" / frame.iloc[0]["psg_file"]
    _click_label(driver, "Upload a recording")
    wait_idle(driver, timeout=60)
    inputs = driver.find_elements(By.CSS_SELECTOR, 'input[type="file"]')
    assert inputs, "no file input on the upload page"
    inputs[0].send_keys(str(edf))
    deadline = time.time() + 90
    while time.time() < deadline and "Channel to modality mapping" not in driver.find_element(By.TAG_NAME, "body").text:
        time.sleep(0.5)
    wait_idle(driver, timeout=90)
    body = driver.find_element(By.TAG_NAME, "body").text
    # home-test montage: ECG, belts, flow, SpO2 + derived ibi and resp (the grid itself is a canvas)
    assert "Channel to modality mapping" in body and "6 of 9" in body and "0.25 h" in body
    driver.save_screenshot(str(shots / "e2e-night-upload.png"))
    shutil.rmtree(tmp_path / "up", ignore_errors=True)


# --- issue 14.2: every reader path through the real file input ------------------------------------
def _upload_files(driver, server, paths, expect: str, timeout: float = 120) -> str:
    """A fresh session on the Night page, "Upload a recording", all ``paths`` into the recording
    uploader at once (as a user selects several files); returns the page text once ``expect`` shows."""
    from screenshots import wait_idle
    from selenium.webdriver.common.by import By

    driver.get(server)  # a new page load is a new session: no file of an earlier test is kept
    wait_idle(driver, timeout=120)
    _click_label(driver, "Upload a recording")
    wait_idle(driver, timeout=60)
    inputs = driver.find_elements(By.CSS_SELECTOR, 'input[type="file"]')
    assert inputs and inputs[0].get_attribute("multiple") is not None, "the recording uploader takes several files"
    inputs[0].send_keys("\n".join(str(p) for p in paths))
    deadline = time.time() + timeout
    body = ""
    while time.time() < deadline:
        body = driver.find_element(By.TAG_NAME, "body").text
        if expect in body:
            break
        time.sleep(0.5)
    wait_idle(driver, timeout=timeout)
    return driver.find_element(By.TAG_NAME, "body").text


def test_upload_a_wfdb_record_as_several_files(server, driver, shots, tmp_path):
    from tests.format_writers import write_wfdb_record

    hea = write_wfdb_record(tmp_path, "slp99", minutes=10, beats=True, stages=True)
    files = [hea, tmp_path / "slp99.dat", tmp_path / "slp99.ecg", tmp_path / "slp99.st"]
    body = _upload_files(driver, server, files, "Channel to modality mapping")
    assert "Channel to modality mapping" in body and "Expert hypnogram: slp99.st" in body, body[:2000]
    assert "20" in body and "5 of 9" in body  # 10 min; eeg, ecg, ibi (from the .ecg beats), resp, effort
    driver.save_screenshot(str(shots / "e2e-night-upload-wfdb.png"))


def test_upload_a_dreams_excerpt_with_its_hypnogram(server, driver, shots, tmp_path):
    from tests.conftest import SHARED_DATA
    from tests.test_dreams import _write_hypnogram, _write_signal

    real = SHARED_DATA / "dreams"
    if (real / "excerpt1.txt").is_file():
        files, epochs = [real / "excerpt1.txt", real / "Hypnogram_excerpt1.txt"], "60"
    else:
        import numpy as np

        rng = np.random.default_rng(0)
        files = [_write_signal(tmp_path / "excerpt1.txt", rng.normal(0, 20, 100 * 600)),
                 _write_hypnogram(tmp_path / "Hypnogram_excerpt1.txt", [2] * 120)]
        epochs = "20"
    body = _upload_files(driver, server, files, "Channel to modality mapping")
    assert "Expert hypnogram: Hypnogram_excerpt1.txt" in body and epochs in body and "1 of 9" in body, body[:2000]
    assert "Sampling rate of the DREAMS text excerpt" in body  # offered, not needed: the hypnogram gives it
    driver.save_screenshot(str(shots / "e2e-night-upload-dreams.png"))


def test_upload_brainvision_and_export_bids_events(server, driver, shots, tmp_path):
    from screenshots import wait_idle
    from selenium.webdriver.common.by import By

    from tests.format_writers import write_brainvision

    vhdr = write_brainvision(tmp_path / "sub-01_task-sleep_eeg", minutes=10)
    files = [vhdr, vhdr.with_suffix(".vmrk"), vhdr.with_suffix(".eeg")]
    body = _upload_files(driver, server, files, "Channel to modality mapping")
    assert "Channel to modality mapping" in body and "6 of 9" in body and "23:15:00" in body, body[:2000]
    assert "is read with its header file" not in body
    driver.save_screenshot(str(shots / "e2e-night-upload-brainvision.png"))
    for link in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]'):
        if link.text.split("\n")[-1] == "Export":
            link.click()
            break
    deadline = time.time() + 180
    while time.time() < deadline and "BIDS events" not in driver.find_element(By.TAG_NAME, "body").text:
        time.sleep(0.5)
    wait_idle(driver, timeout=180)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "Predictions as BIDS events (TSV)" in body and "sub-01_task-sleep_events.tsv" in body, body[:3000]
    driver.save_screenshot(str(shots / "e2e-export-bids.png"))


def test_upload_a_compressed_fif_file(server, driver, shots, tmp_path):
    from tests.format_writers import write_fif

    fif = write_fif(tmp_path / "night_raw.fif.gz", minutes=10, stages=True)
    body = _upload_files(driver, server, [fif], "Channel to modality mapping")
    assert "6 of 9" in body and "Expert hypnogram: night_raw.fif.gz (annotations)" in body, body[:2000]
    driver.save_screenshot(str(shots / "e2e-night-upload-fif.png"))
