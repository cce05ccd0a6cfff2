"""Take screenshots of the running app with headless Chromium (Debian chromium + chromium-driver).

    python scripts/screenshots.py --url http://localhost:8501 --out docs/screenshots

Each page is opened, the script waits until Streamlit has finished running it, and saves a PNG.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def make_driver(width: int = 1400, height: int = 1600) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def wait_idle(driver: webdriver.Chrome, timeout: float = 90.0, settle: float = 1.5) -> None:
    """Wait until the app shows content and no script is running."""
    end = time.time() + timeout
    while time.time() < end:
        running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        ready = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMainBlockContainer"] h1')
        if ready and not running:
            time.sleep(settle)
            if not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'):
                return
        time.sleep(0.5)
    raise TimeoutError("the app did not finish rendering in time")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://localhost:8501")
    ap.add_argument("--out", default="docs/screenshots")
    ap.add_argument("--pages", default="", help="comma-separated url paths, e.g. ',hypnogram,gates'")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    driver = make_driver()
    try:
        for page in args.pages.split(","):
            driver.get(f"{args.url.rstrip('/')}/{page}")
            wait_idle(driver)
            name = page or "night"
            driver.save_screenshot(str(out / f"{name}.png"))
            print("saved", out / f"{name}.png")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
