"""The FiftyOne App, in headless Chromium, shows the highest-scored samples first.

Needs Debian's ``chromium`` and ``chromium-driver`` and ``pip install selenium``;
skipped (with the reason) when any is missing. Run alone with
``pytest -m browser tests/browser``; ``CURATE_SCREENSHOT=docs/app_sorted_by_volume_growth.png``
refreshes the screenshot in docs/.
"""
import os
import shutil
import socket
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000"]


def _driver(profile_dir):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    opts = Options()
    opts.binary_location = chrome
    for a in CHROME_FLAGS + [f"--user-data-dir={profile_dir}"]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(fn, timeout=60.0, every=0.5):
    end = time.time() + timeout
    while True:
        value = fn()
        if value or time.time() > end:
            return value
        time.sleep(every)


# Each tile's score tag, with the tile's position on screen (DOM order is not grid order).
_TILE_SCORES_JS = """
return Array.from(document.querySelectorAll('[data-cy="looker"]')).map(tile => {
  const r = tile.getBoundingClientRect();
  const tag = tile.querySelector('[data-cy="tag-volume_growth"]');
  return [r.top, r.left, tag ? tag.textContent : null];
});
"""


def test_app_grid_sorted_by_score_shows_highest_first(tmp_path):
    import fiftyone as fo

    import curate.brain as cb
    from curate.brain.model_source import exact_score_of
    from curate.data.datasets import load_digits

    ds = load_digits(tmp_path / "png", dataset_name="app-sorting-t", max_samples=20,
                     overwrite=True, progress=False)
    # 20 Euler steps: the exact score separates held-out from training digits.
    cb.compute_volume_growth(ds, exact_score_of(ds), steps=20, progress=False)
    scores = np.sort(np.array(ds.values("volume_growth")))[::-1]
    assert scores[0] - scores[5] > 0.5  # distinct enough to check an order on screen

    driver = _driver(tmp_path / "chrome-profile")
    port = _free_port()
    # The App's grid sorted by the score. The view goes in at launch: setting session.view
    # afterwards races the server's start ("Client is not connected") on a busy machine.
    session = fo.launch_app(view=ds.sort_by("volume_growth", reverse=True), remote=True, port=port, auto=False)
    try:
        driver.get(f"http://127.0.0.1:{port}/datasets/{ds.name}")
        # Show the score on every tile.
        box = _wait(lambda: driver.find_elements("css selector", '[data-cy="checkbox-volume_growth"]'))
        assert box, "the App did not list the volume_growth field"
        _wait(lambda: driver.find_elements("xpath", "//*[text()='Dismiss']"), timeout=10)
        for b in driver.find_elements("xpath", "//*[text()='Dismiss']"):
            b.click()  # the App's promotion pop-up covers the sidebar
        time.sleep(0.5)  # the pop-up's fade-out
        box = driver.find_element("css selector", '[data-cy="checkbox-volume_growth"] input')
        driver.execute_script("arguments[0].click();", box)
        tiles = _wait(lambda: [t for t in driver.execute_script(_TILE_SCORES_JS) if t[2]])
        if not tiles:
            driver.save_screenshot(str(tmp_path / "debug.png"))  # kept by pytest for a look
            (tmp_path / "debug.html").write_text(driver.page_source)
        assert len(tiles) >= 12, f"only {len(tiles)} tiles show a score"
        tiles.sort(key=lambda t: (round(t[0]), t[1]))  # reading order: rows, then columns
        shown = [float(t[2]) for t in tiles]
        # The first tiles are the highest stored scores, in order (as shown, rounded).
        k = min(len(shown), 12)
        decimals = max(len(t[2].split(".")[1]) if "." in t[2] else 0 for t in tiles[:k])
        np.testing.assert_allclose(shown[:k], scores[:k], atol=0.51 * 10.0 ** -decimals + 1e-9)
        assert shown == sorted(shown, reverse=True)
        shot = os.environ.get("CURATE_SCREENSHOT")
        if shot:
            time.sleep(1.0)
            driver.save_screenshot(shot)
    finally:
        driver.quit()
        getattr(session, "close", lambda: None)()
        fo.delete_dataset(ds.name)
