"""The FiftyOne App, in headless Chromium, shows the highest-scored samples first, and
sorts by similarity to a duplicated image through dedupe's similarity index.

Needs Debian's ``chromium`` and ``chromium-driver`` and ``pip install selenium``;
skipped (with the reason) when any is missing. Run alone with
``pytest -m browser tests/browser``; ``CURATE_SCREENSHOT=docs/app_sorted_by_volume_growth.png``
refreshes the screenshot in docs/; ``CURATE_SCREENSHOT_SIMILARITY=docs/app_sorted_by_similarity.png
CURATE_SCREENSHOT_GROUPS=docs/app_duplicate_groups.png`` refresh those of the similarity
sort and of dedupe's groups view (with CIFAR-10 test images when ../shared has them).
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


def _settled(driver, pause: float = 1.0):
    """The tiles that show a score, once two reads ``pause`` s apart agree: on a busy
    machine the grid first draws the tiles with stale tags (seen: every tile 2.11)."""
    first = [t for t in driver.execute_script(_TILE_SCORES_JS) if t[2]]
    time.sleep(pause)
    again = [t for t in driver.execute_script(_TILE_SCORES_JS) if t[2]]
    return again if first and first == again else []


def test_app_grid_sorted_by_score_shows_highest_first(tmp_path):
    import fiftyone as fo

    import curate.brain as cb
    from curate.brain.model_source import exact_score_of
    from curate.data.datasets import load_digits

    ds = load_digits(images_dir=tmp_path / "png", dataset_name="app-sorting-t", max_samples=20,
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
        tiles = _wait(lambda: _settled(driver))
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
        _screenshot(driver, "CURATE_SCREENSHOT")
    finally:
        driver.quit()
        getattr(session, "close", lambda: None)()
        fo.delete_dataset(ds.name)


_TILE_FIELD_JS = """
const field = arguments[0];
return Array.from(document.querySelectorAll('[data-cy="looker"]')).map(tile => {
  const r = tile.getBoundingClientRect();
  const tag = tile.querySelector('[data-cy="tag-' + field + '"]');
  return [r.top, r.left, tag ? tag.textContent : null];
});
"""


def _photos_with_copies(tmp_path):
    """(images uint8, edits): 24 photos (CIFAR-10 test images when refreshing the docs'
    screenshots and they are at ../shared, else synthetic ones) + 3 edited copies of photo 0."""
    from pathlib import Path

    from curate.duplicates import edits as E

    cifar = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10"
    if os.environ.get("CURATE_SCREENSHOT_SIMILARITY") and (cifar / "order.csv").is_file():
        from curate.data.cifar import tree_files
        from curate.bench._dedupe_measure import read_images

        photos = read_images([p for _, _, p in tree_files(cifar.resolve(), "test")[:24]])
    else:
        photos = E.natural_like(24, seed=5)
    edits = [[("shift", {"dx": 3, "dy": -2}), ("reencode", {"quality": 40})],
             [("crop", E.edge_cases("crop")[2]), ("brightness_contrast", {"brightness": 1.2, "contrast": 0.85})],
             [("mirror", {}), ("colour", E.edge_cases("colour")[1])]]
    copies = [E.apply_all(photos[0], e) for e in edits]
    return np.concatenate([photos, np.stack(copies)])


def _tile_values(driver, field):
    """The values of ``field`` shown on the grid's tiles, in reading order."""
    tiles = [t for t in driver.execute_script(_TILE_FIELD_JS, field) if t[2]]
    tiles.sort(key=lambda t: (round(t[0]), t[1]))  # rows, then columns
    return [float(t[2]) for t in tiles]


def _show_field_on_tiles(driver, field):
    box = _wait(lambda: driver.find_elements("css selector", f'[data-cy="checkbox-{field}"]'))
    assert box, f"the App did not list the {field} field"
    _wait(lambda: driver.find_elements("xpath", "//*[text()='Dismiss']"), timeout=10)
    for b in driver.find_elements("xpath", "//*[text()='Dismiss']"):
        b.click()  # the App's promotion pop-up covers the sidebar
    time.sleep(0.5)
    box = driver.find_element("css selector", f'[data-cy="checkbox-{field}"] input')
    driver.execute_script("arguments[0].click();", box)
    return _wait(lambda: _tile_values(driver, field))


def test_app_sorts_by_similarity_to_a_duplicated_image(tmp_path):
    """dedupe's similarity index in the App: sorted by similarity to an edited copy, the
    grid starts with that copy, its source and the other copies of the source."""
    import fiftyone as fo
    from fiftyone.core.utils import to_slug
    from PIL import Image

    import curate.brain as cb

    images = _photos_with_copies(tmp_path)
    samples = []
    for i, img in enumerate(images):
        path = tmp_path / f"img{i:02d}.png"
        Image.fromarray(img).save(path)
        samples.append(fo.Sample(filepath=str(path), item=float(i)))
    ds = fo.Dataset("app-similarity-t", overwrite=True)
    ds.add_samples(samples, progress=False)
    groups = cb.dedupe(ds, query_tag=None, keep="first")
    item = dict(zip(*ds.values(["id", "item"])))
    family = {0.0, 24.0, 25.0, 26.0}  # photo 0 and its three copies
    assert [sorted(item[s] for s in g) for g in groups] == [sorted(family)]
    query = next(s for s, v in item.items() if v == 24.0)
    want = [item[s] for s in ds.sort_by_similarity(query, brain_key="dedupe").values("id")]
    assert want[0] == 24.0 and set(want[:3]) <= family  # the index itself ranks the family first

    # What the App's "sort by similarity" applies, as a saved view opened by its URL
    # (a view handed to launch_app with this stage did not reach the grid here).
    ds.save_view("similar_to_copy", ds.sort_by_similarity(query, brain_key="dedupe", k=len(ds)))
    driver = _driver(tmp_path / "chrome-profile")
    port = _free_port()
    session = fo.launch_app(ds, remote=True, port=port, auto=False)
    try:
        driver.get(f"http://127.0.0.1:{port}/datasets/{ds.name}?view={to_slug('similar_to_copy')}")
        # the grid first shows the whole dataset; wait for the view's stage to be applied
        assert _wait(lambda: driver.find_elements("xpath", "//*[text()='SortBySimilarity']")), \
            "the App did not apply the similarity view"
        time.sleep(1.0)
        _show_field_on_tiles(driver, "item")
        # the tiles of the whole dataset may still be on screen for a moment
        shown = _wait(lambda: [v for v in [_tile_values(driver, "item")] if v and v[0] == want[0]])
        shown = _tile_values(driver, "item")
        if len(shown) < 12:
            driver.save_screenshot(str(tmp_path / "debug.png"))  # kept by pytest for a look
        assert len(shown) >= 12, f"only {len(shown)} tiles show an item"
        assert shown[:len(want)] == want[:len(shown)]  # the App's order is the index's order
        assert shown[0] == 24.0 and set(shown[:3]) <= family
        _screenshot(driver, "CURATE_SCREENSHOT_SIMILARITY")
        shot = os.environ.get("CURATE_SCREENSHOT_GROUPS")
        if shot:  # the saved view of the groups, the kept copy first
            driver.get("about:blank")
            driver.get(f"http://127.0.0.1:{port}/datasets/{ds.name}?view={to_slug('duplicate_groups')}")
            assert _wait(lambda: driver.find_elements("xpath", "//*[text()='Exists']")), "no groups view"
            time.sleep(1.0)
            _show_field_on_tiles(driver, "duplicate_group")
            time.sleep(1.0)
            driver.save_screenshot(shot)
    finally:
        driver.quit()
        getattr(session, "close", lambda: None)()
        fo.delete_dataset(ds.name)


def _screenshot(driver, variable: str) -> None:
    """Save what the browser shows to the path in environment variable ``variable``, if set."""
    shot = os.environ.get(variable)
    if shot:
        time.sleep(1.0)  # let the grid finish drawing
        driver.save_screenshot(shot)
