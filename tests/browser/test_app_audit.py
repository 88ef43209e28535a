"""The FiftyOne App, in headless Chromium, shows each copy a model generates beside the
training image it copies: the audit's grouped copies dataset, slice ``pair``
(generated | source) in the grid, in the order of the generated samples.

Needs Debian's ``chromium`` and ``chromium-driver`` and ``pip install selenium``;
skipped (with the reason) when any is missing. ``CURATE_SCREENSHOT_AUDIT=docs/app_audit_copies.png``
refreshes the screenshot in docs/.
"""
import os
import time

import pytest
import torch

from test_app_sorting import _driver, _free_port, _show_field_on_tiles, _tile_values, _wait

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_app_shows_copies_beside_their_sources(tmp_path):
    import fiftyone as fo

    import curate.brain as cb
    from curate.data.datasets import load_digits
    from curate.data.loader import load_images
    from curate.models.exact import ExactScore

    ds = load_digits(dataset_name="app-audit-t", max_samples=20, images_dir=tmp_path / "png", overwrite=True,
                     progress=False)
    train = ds.match_tags("train")
    _, tr, _ = load_images(train, num_workers=0)
    _, te, _ = load_images(ds.match_tags("test"), num_workers=0)
    # the exact score of 4 training digits and 8 held-out ones: some samples copy, some not
    model = ExactScore(torch.cat([tr[:4], te[:8]]).to(torch.float64))
    s = cb.compute_reproductions(train, model, 48, steps=20, batch_size=16, criterion="rms",
                                 out_dir=tmp_path / "audit", progress=False, num_workers=0)
    assert 0 < s.copies < 48
    copies = fo.load_dataset(s.copies_dataset)
    want = [float(i) for i in copies.select_group_slices("pair").values("index")]
    assert len(want) == s.copies

    driver = _driver(tmp_path / "chrome-profile")
    port = _free_port()
    session = fo.launch_app(copies, remote=True, port=port, auto=False)
    try:
        driver.get(f"http://127.0.0.1:{port}/datasets/{copies.name}")
        _show_field_on_tiles(driver, "index")
        shown = _wait(lambda: [v for v in [_tile_values(driver, "index")] if len(v) >= min(12, len(want))])
        shown = _tile_values(driver, "index")
        if len(shown) < min(12, len(want)):
            driver.save_screenshot(str(tmp_path / "debug.png"))
        k = min(12, len(want))
        assert shown[:k] == want[:k], (shown, want)  # the pair slice, in the generated samples' order
        shot = os.environ.get("CURATE_SCREENSHOT_AUDIT")
        if shot:
            time.sleep(1.0)
            driver.save_screenshot(shot)
    finally:
        driver.quit()
        getattr(session, "close", lambda: None)()
        ds.delete_brain_run("reproductions")
        fo.delete_dataset(ds.name)
