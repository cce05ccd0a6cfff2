"""App timings in a real browser: start to first hypnogram, and an 8-h PSG upload to hypnogram.

    python bench/bench_app.py [--runs 3] [--port 8765]

Drives ``streamlit run app.py`` with headless Chromium (Debian ``chromium`` + ``chromium-driver``,
Selenium), as a user would:

1. **start -> first hypnogram**: from launching the server process to the Hypnogram page
   showing the predicted hypnogram of the 8-h nine-modality sample night (first request is the
   ``/hypnogram`` URL). Measured twice: with an empty sample cache (the very first launch, which
   also generates the synthetic sample night) and with the night already cached (every later
   launch). Includes Python imports, loading the model and reading + staging the night.
2. **upload 8-h PSG -> hypnogram**: on a running server, the 8-h nine-modality EDF (46 MB) plus its
   hypnogram go through the Night page's file inputs; timed from handing the files to the browser
   until the Hypnogram page shows the hypnogram and agreement figures. Each run uses a freshly
   started server (opened on the Night page first), so no cache can answer.

The goal (issue 5) is under 10 s for an 8-h, 9-modality night. Prints the figures and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(port: int, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "S2V_CACHE": str(cache)}
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _wait_port(port: int, deadline: float) -> None:
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("the server did not open its port")


def _hypnogram_shown(driver, need_agreement: bool = False) -> bool:
    """The Hypnogram page has drawn its hypnogram (and, if asked, the agreement metrics)."""
    from selenium.webdriver.common.by import By

    if driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'):
        return False
    heads = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "h1")]
    plots = driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg")
    if "Hypnogram" not in heads or not plots:
        return False
    if need_agreement:
        return "Cohen's kappa" in driver.find_element(By.TAG_NAME, "body").text
    return True


def _wait(cond, timeout: float, poll: float = 0.1) -> float:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return time.time()
        time.sleep(poll)
    raise TimeoutError("timed out")


def start_to_hypnogram(port: int, cache: Path, driver) -> float:
    t0 = time.time()
    proc = _start_server(port, cache)
    try:
        _wait_port(port, t0 + 120)
        driver.get(f"http://127.0.0.1:{port}/hypnogram")
        t1 = _wait(lambda: _hypnogram_shown(driver, need_agreement=True), 300)
        return t1 - t0
    finally:
        _stop(proc)


PHASES: list[tuple[float, float]] = []  # (upload -> Night page shown, -> Hypnogram page shown)


def upload_to_hypnogram(url: str, driver, psg: Path, hyp: Path | None) -> float:
    from screenshots import wait_idle
    from selenium.webdriver.common.by import By

    driver.get(url)
    wait_idle(driver, timeout=300)
    for el in driver.find_elements(By.CSS_SELECTOR, "label"):
        if el.text.strip() == "Upload a recording":
            el.click()
            break
    else:
        raise RuntimeError("no upload choice on the Night page")
    _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, 'input[type="file"]')) >= 2, 60)
    inputs = driver.find_elements(By.CSS_SELECTOR, 'input[type="file"]')
    t0 = time.time()
    inputs[0].send_keys(str(psg))
    if hyp is not None:
        inputs[1].send_keys(str(hyp))
    body = lambda: driver.find_element(By.TAG_NAME, "body").text  # noqa: E731
    t_night = _wait(lambda: psg.name in body() and "Channel to modality mapping" in body()
                    and not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'), 300)
    links = [a for a in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
             if a.text.endswith("Hypnogram")]
    links[0].click()
    t1 = _wait(lambda: _hypnogram_shown(driver, need_agreement=hyp is not None), 300)
    PHASES.append((t_night - t0, t1 - t_night))
    return t1 - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="repetitions of each measurement (median)")
    args = ap.parse_args()
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        print("needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)")
        return 2
    from screenshots import make_driver

    from s2v_core.synth.cohort import full_sample_night

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    work = Path(tempfile.mkdtemp(prefix="s2v-bench-app-"))
    driver = make_driver(1400, 1200)
    try:
        cold = []
        for k in range(args.runs):
            cache = work / f"cold{k}"
            cold.append(start_to_hypnogram(_free_port(), cache, driver))
        warm_cache = work / "warm"
        start_to_hypnogram(_free_port(), warm_cache, driver)  # fills the cache
        warm = [start_to_hypnogram(_free_port(), warm_cache, driver) for _ in range(args.runs)]

        os.environ["S2V_CACHE"] = str(warm_cache)
        psg, hyp = full_sample_night()
        size_mb = psg.stat().st_size / 1e6
        up = []
        for _ in range(args.runs):
            port = _free_port()
            proc = _start_server(port, warm_cache)
            try:
                _wait_port(port, time.time() + 120)
                up.append(upload_to_hypnogram(f"http://127.0.0.1:{port}", driver, psg, hyp))
            finally:
                _stop(proc)
    finally:
        driver.quit()
        shutil.rmtree(work, ignore_errors=True)

    def fmt(xs: list[float]) -> str:
        return f"median {statistics.median(xs):.2f} s  (runs: {', '.join(f'{x:.2f}' for x in xs)})"

    print("start -> first hypnogram, 8-h 9-modality sample night (server launch to figure):")
    print(f"  first launch ever (sample night generated): {fmt(cold)}")
    print(f"  later launches (sample night cached):       {fmt(warm)}")
    print(f"upload 8-h 9-modality PSG ({size_mb:.0f} MB EDF + hypnogram) -> hypnogram + agreement:")
    med = statistics.median(up)
    print(f"  {fmt(up)}  goal < 10 s: {'met' if med < 10 else 'NOT met'}")
    print("  of which: upload + read + Night page "
          + ", ".join(f"{a:.2f}" for a, _ in PHASES) + " s; then Hypnogram page (staging + figures) "
          + ", ".join(f"{b:.2f}" for _, b in PHASES) + " s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
