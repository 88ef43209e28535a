"""docs/audit.md's check: an audit's stored per-image counts against
curate.memorization.find_memorized on the same (saved) generated samples.

    .venv/bin/python docs/audit_check_memorized.py DATASET [--tags train] [--key reproductions]
"""
import argparse

import fiftyone as fo

from curate.data.loader import load_images
from curate.memorization import find_memorized

p = argparse.ArgumentParser()
p.add_argument("dataset")
p.add_argument("--tags", default="train")
p.add_argument("--key", default="reproductions")
a = p.parse_args()
ds = fo.load_dataset(a.dataset)
train = ds.match_tags(a.tags)
cfg = ds.get_brain_info(a.key).config
gen = fo.load_dataset(cfg.generated_dataset).exists("nearest_group").sort_by("index")
_, samples, failed_g = load_images(gen, num_workers=0)
ids, images, failed_t = load_images(train, num_workers=0)
assert not failed_g and not failed_t
m = find_memorized(samples, images)
for c in ("carlini", "gu", "rms"):
    stored = dict(zip(*train.values(["id", f"{a.key}_{c}"])))
    same = [stored[i] for i in ids] == m.counts(c).tolist()
    print(f"{c}: stored counts == find_memorized: {same}; copies {int(m.memorized(c).sum())}")
