"""The clean-and-retrain recipes end to end on their smoke presets, against a real
throwaway mongod. The four arms are checked against independent computations: duplicate
groups from the pixels, the top-k from the stored scores, the random draw redone, the
exported files, nearest neighbours from torch.cdist and the bootstrap redone in numpy."""
from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "brain"))
import _mongod  # noqa: E402

_mongod.start()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from curate.recipes import clean_cifar, clean_digits  # noqa: E402
from curate.recipes.clean import settings as _clean  # noqa: E402  (ARMS, CRITERIA, ARM_LABEL, ARM_EXCLUDE)

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# --------------------------------------------------------------- small pieces ---

def test_bad_settings_are_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "never"
    for setting, why in [("clean.top_k=0", "clean.top_k"), ("data.copies=1", "data.copies >= 2"),
                         ("seeds=[]", "seeds must be a non-empty list"), ('seeds=["a"]', "seeds must be"),
                         ("seeds=[0, 0]", "seeds must be distinct"), ("seeds=[-1]", "non-negative"),
                         ("memorization.bootstrap=10", "memorization.bootstrap"),
                         ("clean.dedupe_threshold=-1.0", "dedupe_threshold"),
                         ("clean.remove=flagged", "unknown key"), ("workers=0", "workers .* must be an int >= 1"),
                         ("workers=true", "workers=true: expected an int")]:
        with pytest.raises(SystemExit, match=why):
            clean_digits.main(["--config", "smoke", "--set", setting, "--out", str(out)])
    assert not out.exists()


def _dry_run(main, argv, capsys) -> dict:
    import tomllib

    assert main(argv + ["--dry-run"]) is None
    return tomllib.loads(capsys.readouterr().out.split("\n", 1)[1])


def test_dry_run_resolves_cifar_flags(capsys):
    cfg = _dry_run(clean_cifar.main, ["--config", "smoke", "--cifar-root", "/some/where", "--download"], capsys)
    assert cfg["data"]["root"] == "/some/where" and cfg["data"]["download"] is True
    assert cfg["model"]["preset"] == "tiny" and cfg["data"]["n_images"] == 60  # smoke over its base "subset"
    assert cfg["seeds"] == [0] and "remove" not in cfg["clean"]


def test_seeds3_is_the_default_with_three_training_seeds(capsys):
    default = _dry_run(clean_digits.main, [], capsys)
    seeds3 = _dry_run(clean_digits.main, ["--config", "seeds3"], capsys)
    assert default["seeds"] == [0] and seeds3["seeds"] == [0, 1, 2]
    assert {**seeds3, "seeds": [0]} == default


def _direct_bootstrap(flags, n_boot, seed):
    """Percentile intervals, resample by resample, in plain numpy loops (the recipe's bootstrap redone)."""
    arms = list(flags)
    seeds = list(flags[arms[0]])
    per = {}  # (arm, crit) -> (n_seeds, n_boot)
    for j, s in enumerate(seeds):
        rng = np.random.default_rng([seed, s])
        m = len(flags[arms[0]][s]["carlini"])
        idx = rng.integers(0, m, size=(n_boot, m))
        for arm in arms:
            for c in ("carlini", "gu"):
                f = np.asarray(flags[arm][s][c])
                per.setdefault((arm, c), np.zeros((len(seeds), n_boot)))[j] = [f[row].sum() for row in idx]
    ci = lambda v: list(np.percentile(v, [2.5, 97.5]))  # noqa: E731
    out = {}
    for (arm, c), v in per.items():
        counts = [int(np.sum(flags[arm][s][c])) for s in seeds]
        out[arm, c] = {"counts": counts, "seed_ci": [ci(v[j]) for j in range(len(seeds))], "ci": ci(v.mean(0)),
                       "boot": v.mean(0)}
    return out


def _check_bootstrap(summary: dict, flags: dict, n_boot: int, seed: int):
    want = _direct_bootstrap(flags, n_boot, seed)
    seeds = list(flags["baseline"])
    for (arm, c), w in want.items():
        got = summary["arms"][arm][c]
        assert [got["per_seed"][str(s)]["count"] for s in seeds] == w["counts"]
        for j, s in enumerate(seeds):
            lo, hi = got["per_seed"][str(s)]["ci"]
            assert [lo, hi] == pytest.approx(w["seed_ci"][j])
            assert lo <= w["counts"][j] <= hi
        assert got["mean"] == pytest.approx(np.mean(w["counts"]))
        assert (got["min"], got["max"]) == (min(w["counts"]), max(w["counts"]))
        assert got["ci"] == pytest.approx(w["ci"])
        assert got["ci"][0] <= got["mean"] <= got["ci"][1]
    for c in ("carlini", "gu"):
        a = summary["score_adds"][c]
        mean = {arm: np.mean(want[arm, c]["counts"]) for arm in ("dedupe", "dedupe_score", "dedupe_random")}
        boot = {arm: want[arm, c]["boot"] for arm in mean}
        red_s, red_r = mean["dedupe"] - mean["dedupe_score"], mean["dedupe"] - mean["dedupe_random"]
        assert a["reduction_score"] == pytest.approx(red_s) and a["reduction_random"] == pytest.approx(red_r)
        assert a["random_minus_score"] == pytest.approx(mean["dedupe_random"] - mean["dedupe_score"])
        assert a["random_minus_score_ci"] == pytest.approx(
            list(np.percentile(boot["dedupe_random"] - boot["dedupe_score"], [2.5, 97.5])))
        assert a["margin_ci"] == pytest.approx(list(np.percentile(
            (boot["dedupe"] - boot["dedupe_score"]) - 2 * (boot["dedupe"] - boot["dedupe_random"]), [2.5, 97.5])))
        assert a["ratio"] == (pytest.approx(red_s / red_r) if red_r > 0 else None)
        assert a["target_met"] == (red_s > 0 and red_s >= 2 * red_r)


def test_bootstrap_matches_a_direct_recomputation():
    """Synthetic memorized flags with known rates: the summary equals plain numpy loops."""
    from curate.recipes.clean.bootstrap import summarize

    rng = np.random.default_rng(5)
    rates = {"baseline": 0.3, "dedupe": 0.1, "dedupe_score": 0.02, "dedupe_random": 0.09}
    flags = {a: {s: {c: rng.random(200) < p for c in ("carlini", "gu")} for s in (0, 3)} for a, p in rates.items()}
    summary = summarize(flags, n_boot=500, rng_seed=lambda s: [7, s], base="dedupe", score="dedupe_score",
                        random="dedupe_random")
    _check_bootstrap(summary, flags, 500, 7)
    assert summary["score_adds"]["carlini"]["target_met"]  # 0.08 cut by score vs ~0.01 at random
    # A random removal that cuts nothing leaves the ratio undefined; no cut by the score misses the target.
    flags["dedupe_score"] = flags["dedupe_random"] = flags["dedupe"]
    same = summarize(flags, n_boot=200, rng_seed=lambda s: [7, s], base="dedupe", score="dedupe_score",
                     random="dedupe_random")["score_adds"]["gu"]
    assert same["ratio"] is None and not same["target_met"] and same["random_minus_score_ci"] == [0.0, 0.0]


# ------------------------------------------------------------------ checks ---

def _independent_memorization(samples: torch.Tensor, reference: torch.Tensor) -> dict:
    """Carlini, Gu and RMS flags from torch.cdist over the unique reference images."""
    uniq = torch.unique(reference.flatten(1).double(), dim=0)
    d = torch.cdist(samples.flatten(1).double(), uniq).sort(1).values
    carlini = d[:, 0] < 0.5 * d[:, :50].mean(1)
    gu = d[:, 0] / d[:, 1] < 1 / 3
    rms = d[:, 0] / uniq.shape[1] ** 0.5 < 0.10  # root-mean-square pixel difference on [-1, 1]
    return {"carlini": carlini.numpy(), "gu": gu.numpy(), "rms": rms.numpy()}


def _pixels(view) -> dict:
    """{sample id: the image's bytes}: equal bytes = an exact copy."""
    from curate.data.loader import load_images

    ids, images, failed = load_images(view, num_workers=0)
    assert not failed
    return {i: x.numpy().tobytes() for i, x in zip(ids, images)}


def _check_run(out: Path, result: dict, *, n_source: int, n_planted: int, copies: int, exact: bool):
    """Every invariant of the four arms, recomputed. ``exact``: dedupe ran at distance 0,
    so its groups are the exact-copy groups."""
    import fiftyone as fo

    from curate.recipes.clean import arms as _clean_arms

    cfg = result["config"]
    k, seeds = cfg["clean"]["top_k"], cfg["seeds"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"] == result["rows"] and saved["seeds"] == seeds == result["memorization"]["seeds"]
    ds = fo.load_dataset(result["dataset_name"])
    train = ds.match_tags("train")
    n_train = n_source + n_planted * (copies - 1)
    assert train.count() == n_train == result["clean"]["n_train"]
    groups = [g for g in train.values("planted_group") if g is not None]
    assert sorted(set(groups)) == list(range(n_planted)) and len(groups) == n_planted * copies

    # dedupe: one sample per duplicate group, recomputed from the pixels.
    pix = _pixels(train)
    arm_ids = {arm: set(_clean_arms.arm_view(train, arm).values("id")) for arm in _clean.ARMS}
    assert arm_ids["baseline"] == set(pix)
    kept = [pix[i] for i in arm_ids["dedupe"]]
    assert len(set(kept)) == len(kept)  # no two exact copies left
    if exact:
        assert set(kept) == set(pix.values())  # ... and every image still there once
    # dedupe_score and dedupe_random: exactly k unique images of the dedupe arm each.
    for arm in ("dedupe_score", "dedupe_random"):
        assert arm_ids[arm] <= arm_ids["dedupe"] and len(arm_ids["dedupe"] - arm_ids[arm]) == k, arm
    # dedupe_score removed the k highest stored scores of the dedupe arm.
    score = dict(zip(*train.values(["id", result["score_analysis"]["field"]])))
    gone = arm_ids["dedupe"] - arm_ids["dedupe_score"]
    assert min(score[i] for i in gone) >= max(score[i] for i in arm_ids["dedupe_score"])
    assert gone == set(train.match_tags("high_risk").values("id"))
    # dedupe_random: the same draw again (in any database order), another seed draws another set.
    deduped = _clean_arms.arm_view(train, "dedupe")
    drawn = arm_ids["dedupe"] - arm_ids["dedupe_random"]
    assert set(_clean_arms.random_unique(deduped.sort_by("filepath", reverse=True), k, cfg["seed"])) == drawn
    assert set(_clean_arms.random_unique(deduped, k, cfg["seed"] + 1)) != drawn

    # The table's sizes are the tags'; the export holds exactly the dedupe_score arm's images.
    rows = {r["model"]: r for r in result["rows"]}
    for arm in _clean.ARMS:
        assert rows[arm]["training_images"] == len(arm_ids[arm]) == n_train - rows[arm]["removed"], arm
    exported = fo.load_dataset(result["clean"]["exported_dataset"])
    assert sorted(_pixels(exported).values()) == sorted(pix[i] for i in arm_ids["dedupe_score"])
    assert {Path(p).resolve().parent.parent for p in exported.values("filepath")} == {(out / "export").resolve()}

    # Every arm trained once per seed, on the number of images the table says.
    reference = torch.stack([torch.frombuffer(bytearray(b), dtype=torch.float32) for b in pix.values()])
    flags = {arm: {} for arm in _clean.ARMS}
    for arm in _clean.ARMS:
        for s in seeds:
            key = f"{arm}_s{s}"
            mcfg = json.loads((out / "models" / key / "config.json").read_text())
            assert mcfg["train"]["n_images"] == rows[arm]["training_images"], key
            samples = load_file(str(out / "samples" / f"{key}.safetensors"))["samples"]
            assert samples.shape[0] == cfg["memorization"]["samples"]
            flags[arm][s] = _independent_memorization(samples, reference)
            run = result["memorization"]["runs"][key]
            for crit in _clean.CRITERIA:
                assert run[crit]["memorized_samples"] == int(flags[arm][s][crit].sum()), (key, crit)
                assert rows[arm]["per_seed"][str(s)][crit] == run[crit]["memorized_samples"]
                assert run[crit]["memorized_samples_planted"] <= run[crit]["memorized_samples"]
    # The intervals: the recipe's bootstrap redone from the saved flags (and the flags from cdist).
    from curate.memorization import Memorization

    for arm in _clean.ARMS:
        for s in seeds:
            saved_mem = Memorization.load(out / "memorization" / f"{arm}_s{s}")
            for crit in _clean.CRITERIA:
                np.testing.assert_array_equal(getattr(saved_mem, crit).numpy(), flags[arm][s][crit])
    _check_bootstrap(result["memorization"], flags, cfg["memorization"]["bootstrap"], cfg["seed"])
    assert result["score_adds"] == result["memorization"]["score_adds"]

    report = (out / "report.md").read_text()
    for arm in _clean.ARMS:
        assert f"| {_clean.ARM_LABEL[arm]} | {rows[arm]['training_images']} | {rows[arm]['removed']} |" in report
        for s in seeds:
            run = result["memorization"]["runs"][f"{arm}_s{s}"]
            assert f"| {arm}_s{s} | {run['carlini']['memorized_samples']} [" in report
            assert (out / "figures" / f"samples_{arm}_s{s}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## What the score adds beyond dedupe" in report
    if n_planted:
        assert f"{n_planted} training images were planted {copies} times each" in report
    for f in ("memorized_counts.png", "score_highest.png"):
        assert (out / "figures" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f
    return ds


# ----------------------------------------------------------------- recipes ---

@pytest.mark.slow
@pytest.mark.heavy(minutes=2)
def test_clean_digits_smoke_end_to_end(tmp_path, capsys):
    import fiftyone as fo

    out = tmp_path / "cd"
    # Dedupe at distance 0 groups exact copies only, so the test can recompute its groups
    # from the pixels; two training seeds for the across-seed intervals.
    argv = ["--config", "smoke", "--set", "clean.dedupe_threshold=0.0", "--set", "seeds=[0, 1]", "--out", str(out)]
    result = clean_digits.main(argv)
    text = capsys.readouterr().out
    assert f"report: {(out / 'report.md').resolve()}" in text
    ds = _check_run(out, result, n_source=200, n_planted=2, copies=8, exact=True)
    from collections import Counter

    copies = Counter(_pixels(ds.match_tags("train")).values())  # image -> its number of copies
    assert result["clean"]["n_unique"] == len(copies)
    assert result["clean"]["n_groups"] == sum(n > 1 for n in copies.values()) >= 2
    sa = result["score_analysis"]
    assert sa["planted_groups_gone"]["dedupe"] == 0 and sa["planted_samples_removed"]["dedupe"] == 14
    # the report says which distance decided, at the threshold the run applied
    assert result["clean"]["dedupe"]["threshold_applied"] == 0.0
    assert "every pair, aligned descriptor distance <= 0.0, mirroring off, keep `first`" in (out / "report.md").read_text()
    # A rerun resumes: every stage is skipped and the answer is the same.
    again = clean_digits.main(argv)
    text = capsys.readouterr().out
    assert "] running" not in text
    assert text.count("done before, skipped") == 4 + 7 + 8 + 1
    assert again["rows"] == result["rows"]
    # A vanished dataset rebuilds its database stages only, to the same answer.
    fo.delete_dataset(result["dataset_name"])
    again = clean_digits.main(argv)
    text = capsys.readouterr().out
    assert [s for s in ("dataset", "score", "clean") if f"[stage {s}] running" in text] == ["dataset", "score", "clean"]
    assert text.count("] running") == 3
    assert again["rows"] == result["rows"] and again["memorization"] == result["memorization"]


def _write_cifar(root: Path, per_batch: int = 16) -> np.ndarray:
    """A small cifar-10-batches-py folder in the real format (protocol-2 pickles of
    dicts with bytes keys; data uint8 (n, 3072) as 1024 R, 1024 G, 1024 B values)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    all_data = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        # Smooth images (a random colour gradient) so they look like pictures, not noise.
        yy, xx = np.mgrid[0:32, 0:32] / 31.0
        imgs = []
        for _ in range(per_batch):
            a, b, c = rng.uniform(0, 255, (3, 3))
            chans = [np.clip(a[j] * (1 - xx) + b[j] * yy + c[j] * xx * yy / 2, 0, 255) for j in range(3)]
            imgs.append(np.concatenate([ch.reshape(-1) for ch in chans]))
        data = np.stack(imgs).astype(np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [f"img{i}.png".encode() for i in range(per_batch)]}, f, protocol=2)
        if name != "test_batch":
            all_data.append(data)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": per_batch,
                     b"num_vis": 3072}, f, protocol=2)
    return np.concatenate(all_data)


@pytest.mark.slow
def test_clean_cifar_smoke_end_to_end(tmp_path, capsys):
    data = _write_cifar(tmp_path / "cifar")
    out = tmp_path / "cc"
    result = clean_cifar.main(["--config", "smoke", "--cifar-root", str(tmp_path / "cifar"), "--out", str(out)])
    assert f"report: {(out / 'report.md').resolve()}" in capsys.readouterr().out
    ds = _check_run(out, result, n_source=60, n_planted=2, copies=6, exact=False)
    assert result["clean"]["exclude_tags"] == ["duplicate", "high_risk"] == _clean.ARM_EXCLUDE["dedupe_score"]
    # The dataset's first image is row 0 of data_batch_1, channel-planar -> HWC.
    from PIL import Image

    # (planted copies are new samples without a cifar_index; None sorts first)
    first = ds.match_tags("train").exists("cifar_index").sort_by("cifar_index").first()
    assert first.cifar_index == 0
    want = data[0].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(np.asarray(Image.open(first.filepath)), want)
    assert set(ds.default_classes) == set(CLASSES)
    # The export is a class-folder tree of the kept images.
    assert {p.parent.name for p in (out / "export").rglob("*.png")} <= set(CLASSES)


def test_the_report_names_the_dedupe_distance_and_its_cap():
    from curate.recipes.clean.markdown import dedupe_rule

    assert dedupe_rule({"method": "pixel", "threshold": None}) == "normalised pixel L2 <= 0.1"
    capped = dedupe_rule({"method": "descriptor", "threshold": 0.2, "threshold_applied": 0.0764,
                          "background": 0.191, "mirror": True})
    assert capped == ("aligned descriptor distance <= 0.2, capped at 0.076 by the collection's background "
                      "distance (0.191), mirrored copies included")
    assert dedupe_rule({"threshold": 0.2, "threshold_applied": 0.2, "background": 0.6}) == (
        "aligned descriptor distance <= 0.2, mirroring off")


def test_clean_cifar_without_data_says_how_to_get_it(tmp_path):
    with pytest.raises(SystemExit, match="--cifar-root"):
        clean_cifar.main(["--config", "smoke", "--cifar-root", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a GPU preset does on a machine without a GPU")
def test_a_gpu_preset_on_a_cpu_says_so_with_an_estimate(tmp_path):
    """The default preset (``subset``) is sized for a GPU: without one it stops before any
    data or training, estimates its training time from a measured probe and names the CPU
    preset."""
    import re

    with pytest.raises(SystemExit) as e:
        clean_cifar.main(["--cifar-root", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"),
                          "--set", "model.batch_size=2", "--set", "model.preset=tiny"])
    msg = str(e.value)
    assert "preset 'subset' expects a GPU" in msg and "--config cifar_cpu" in msg and "--set device=cpu" in msg
    m = re.search(r"(\d+) training run\(s\) of ([\d,]+) steps.*about ([\d,.]+) hours \(([\d.]+) s per step", msg)
    runs, steps, hours, per_step = int(m[1]), int(m[2].replace(",", "")), float(m[3].replace(",", "")), float(m[4])
    assert runs == 4 and steps == 15000  # four arms, one training seed, the preset's budget
    assert hours == pytest.approx(per_step * steps * runs / 3600, abs=0.05 + 0.005 * steps * runs / 3600)
    assert not (tmp_path / "o" / "images").exists()  # nothing was built


@pytest.mark.slow
def test_constant_size_arms_replace_the_removed_images_from_the_pool(tmp_path):
    """With clean.constant_size the score and random arms train on as many images as the
    dedupe arm (the same k fresh pool images replace what each removed), the export carries
    the replacements, and copies of replacements are counted apart (against the pixels)."""
    import fiftyone as fo

    from curate.recipes.clean.data import view_images

    out = tmp_path / "fair"
    result = clean_digits.main(["--config", "smoke", "--set", "data.n_pool=30", "--set", "clean.constant_size=true",
                                "--set", "clean.dedupe_threshold=0.0", "--out", str(out)])
    cl = result["clean"]
    assert cl["constant_size"] and cl["n_replacements"] == cl["top_k"] == 20
    assert cl["n_kept"]["dedupe_score"] == cl["n_kept"]["dedupe_random"] == cl["n_kept"]["dedupe"]
    assert cl["n_exported"] == cl["n_kept"]["dedupe_score"]
    ds = fo.load_dataset(result["dataset_name"])
    assert ds.count_sample_tags()["pool"] == 30 and ds.match_tags("train").count() == 200 + 14  # + planted copies
    repl = ds.match_tags("replacement")
    assert repl.count() == 20 and not repl.match_tags("train").count()
    # the pool is the last 30 of the 230 images read (by file), after the 200 that train
    read = sorted(p for p in ds.values("filepath") if "/planted/" not in p)
    assert len(read) == 230 and sorted(ds.match_tags("pool").values("filepath")) == read[-30:]
    # the exported arm's training images are its arm plus the replacements, pixel for pixel
    _, exported = view_images(fo.load_dataset(result["clean"]["exported_dataset"]))
    _, arm = view_images(ds.match_tags("train").match_tags(["duplicate", "high_risk"], bool=False))
    _, fresh = view_images(repl)
    key = lambda x: sorted(map(bytes, (x.numpy() * 127.5 + 127.5).round().astype("uint8").reshape(len(x), -1)))  # noqa
    assert key(exported) == sorted(key(arm) + key(fresh))
    for run in result["memorization"]["runs"].values():
        for crit in ("carlini", "gu", "rms"):
            assert run[crit]["memorized_samples_of_replacements"] >= 0
    # the baseline never saw the replacements: its samples' copies of them, if any, are chance look-alikes
    base = result["memorization"]["runs"]["baseline_s0"]["rms"]
    assert base["memorized_samples_of_replacements"] == 0
    # the report says the arms were kept at one size and gives each model's copies of the replacements
    report = (out / "report.md").read_text()
    assert "each replaced by the same 20 images of an unused pool" in report
    for key, run in result["memorization"]["runs"].items():
        row = next(line for line in report.splitlines() if line.startswith(f"| {key} |"))
        counts = [str(run[c]["memorized_samples_of_replacements"]) for c in ("carlini", "gu", "rms")]
        assert row.split(" | ")[-3:] == [*counts[:2], counts[2] + " |"]


def test_the_reports_noise_ceiling_is_exact_on_planted_copies():
    """The clean reports' split-half noise ceiling (report.against_ceiling) against a hand
    count: 6 training images, 40 generated samples that are exact copies of chosen images at
    chosen (even / odd) positions, the rest noise; AUROCs by scikit-learn on the hand counts."""
    from sklearn.metrics import roc_auc_score

    from curate.memorization import find_memorized
    from curate.recipes.clean.report import against_ceiling

    g = torch.Generator().manual_seed(0)
    train = torch.rand(6, 1, 8, 8, generator=g) * 2 - 1
    x = torch.rand(40, 1, 8, 8, generator=g) * 2 - 1
    copies = {0: [0, 1, 2, 4], 1: [6, 8], 2: [9, 11, 13], 3: [15], 5: [20, 21, 22, 23, 25]}  # image: sample indices
    for image, where in copies.items():
        x[where] = train[image]
    mem = find_memorized(x, train)
    counts = np.zeros((2, 6))
    for image, where in copies.items():
        for i in where:
            counts[i % 2, image] += 1
    scores = torch.tensor([5.0, 1.0, 4.0, 0.0, 2.0, 3.0], dtype=torch.float64)
    got = against_ceiling(mem, "rms", torch.arange(6), scores)
    ca, cb = counts
    expect = (roc_auc_score(cb > 0, ca) + roc_auc_score(ca > 0, cb)) / 2
    assert got["noise_ceiling"]["auroc"] == pytest.approx(expect, abs=1e-12)
    score = (roc_auc_score(ca > 0, scores) + roc_auc_score(cb > 0, scores)) / 2
    assert got["auroc_halves"] == pytest.approx(score, abs=1e-12)
