"""Take screenshots of the running app with headless Chromium (Debian chromium + chromium-driver).

    python scripts/screenshots.py --url http://localhost:8501 --out docs/screenshots
    python scripts/screenshots.py --pages "" --views viewer,dropout --epoch 300

Each page is opened, the script waits until Streamlit has finished running it, and saves a PNG.
``--views`` adds close-ups: ``viewer`` types an epoch into the Hypnogram page's epoch box and saves
the signal viewer and spectrogram (``hypnogram_viewer.png``); ``dropout`` saves the Modalities
page's sensor-dropout section (``modalities_dropout.png``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys


def make_driver(width: int = 1400, height: int = 1600, scale: float = 1.0) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                 f"--force-device-scale-factor={scale:g}"):
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


def scroll_to_heading(driver: webdriver.Chrome, text: str):
    """Scroll the main area so that the heading containing ``text`` is at the top; return it."""
    for h in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMainBlockContainer"] h2, '
                                                   '[data-testid="stMainBlockContainer"] h3'):
        if text in h.text:
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", h)
            time.sleep(1.0)
            return h
    raise RuntimeError(f"no heading {text!r} on the page")


def save_section(driver: webdriver.Chrome, heading, path: Path, until: str | None = None) -> None:
    """Save the main area from ``heading`` down to the heading containing ``until`` (else the bottom
    of the window, without blank rows), leaving out the sidebar; 256-colour PNG to stay small."""
    import numpy as np
    from PIL import Image

    driver.save_screenshot(str(path))
    ratio = float(driver.execute_script("return window.devicePixelRatio") or 1.0)
    top = float(driver.execute_script("return arguments[0].getBoundingClientRect().top", heading))
    sidebar = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
    left = float(driver.execute_script("return arguments[0].getBoundingClientRect().right", sidebar[0])) \
        if sidebar else 0.0
    img = Image.open(path).convert("RGB")
    pixels = np.asarray(img)[:, int(left * ratio) + 2:]
    busy = np.flatnonzero(np.abs(pixels.astype(int) - pixels[:, :1].astype(int)).max(axis=(1, 2)) > 8)
    y0 = max(0, int((top - 12) * ratio))
    y1 = min(img.height, int(busy[-1]) + int(24 * ratio)) if busy.size else img.height
    if until:
        for h in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMainBlockContainer"] h2, '
                                                       '[data-testid="stMainBlockContainer"] h3'):
            if until in h.text:
                y1 = min(y1, int(float(driver.execute_script(
                    "return arguments[0].getBoundingClientRect().top", h)) * ratio) - 4)
    img = img.crop((int(left * ratio), y0, img.width, max(y1, y0 + 1)))
    img.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(path, optimize=True)


def shoot_viewer(driver: webdriver.Chrome, url: str, out: Path, epoch: int) -> Path:
    """Hypnogram page with ``epoch`` selected, scrolled to the signal viewer."""
    driver.get(f"{url}/hypnogram")
    wait_idle(driver)
    box = driver.find_element(By.CSS_SELECTOR, '[data-testid="stNumberInput"] input')
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(epoch), Keys.ENTER)
    driver.execute_script("document.activeElement.blur();")
    time.sleep(1.0)
    wait_idle(driver)
    heading = scroll_to_heading(driver, "Signals at the selected epoch")
    path = out / "hypnogram_viewer.png"
    save_section(driver, heading, path, until="Hypnodensity")
    return path


def shoot_dropout(driver: webdriver.Chrome, url: str, out: Path) -> Path:
    """Modalities page scrolled to the sensor-dropout simulation."""
    driver.get(f"{url}/modalities")
    wait_idle(driver, timeout=300)
    heading = scroll_to_heading(driver, "Sensor dropout")
    path = out / "modalities_dropout.png"
    save_section(driver, heading, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://localhost:8501")
    ap.add_argument("--out", default="docs/screenshots")
    ap.add_argument("--pages", default="", help="comma-separated url paths, e.g. ',hypnogram,gates'")
    ap.add_argument("--views", default="", help="close-ups to add: viewer, dropout (comma-separated)")
    ap.add_argument("--epoch", type=int, default=300, help="epoch selected for the viewer close-up")
    ap.add_argument("--size", default="1400x1600", help="window size WIDTHxHEIGHT (CSS pixels)")
    ap.add_argument("--scale", type=float, default=1.0, help="device scale factor (0.6 gives smaller PNGs)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.size.lower().split("x"))
    driver = make_driver(width, height, args.scale)
    url = args.url.rstrip("/")
    try:
        # Open the entry page first: until app.py has run once, Streamlit serves a deep link such as
        # /hypnogram as a stand-alone page with its own folder navigation (pages/ listed by file name).
        driver.get(url)
        wait_idle(driver)
        views = [v.strip() for v in args.views.split(",") if v.strip()]
        if "viewer" in views:
            print("saved", shoot_viewer(driver, url, out, args.epoch))
        if "dropout" in views:
            print("saved", shoot_dropout(driver, url, out))
        for page in args.pages.split(",") if args.pages or not views else []:
            driver.get(f"{url}/{page}")
            wait_idle(driver)
            name = page or "night"
            driver.save_screenshot(str(out / f"{name}.png"))
            print("saved", out / f"{name}.png")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
