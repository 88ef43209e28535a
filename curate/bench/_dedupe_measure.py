"""What the near-duplicate benchmark measures besides scores: image decoding, the peak
memory a step adds, and the descriptor's cost over a whole CIFAR-10 (``--scale``)."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from curate.data.tensors import hwc_uint8_to_nchw
from curate.duplicates.choices import DEFAULT_EMBEDDING, DEFAULT_VERIFIER


def cifar_paths(root: Path, split: str = "train") -> list[tuple[int, Path]]:
    """(official index, file) of a split of a CIFAR-10 image tree, in official order."""
    from curate.data.cifar import tree_files

    files = tree_files(Path(root), split)
    if not files:
        raise FileNotFoundError(f"no images under {Path(root) / split}: --cifar-root must be a CIFAR-10 image "
                                "tree <root>/{train,test}/<class>/<file>")
    return [(i, p) for i, _, p in files]


def read_images(paths: list, workers: int = 2) -> np.ndarray:
    """uint8 (n, H, W, 3) from image files, decoded in threads."""
    import concurrent.futures as cf

    from PIL import Image

    def read(p):
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))

    with cf.ThreadPoolExecutor(workers) as ex:
        return np.stack(list(ex.map(read, paths, chunksize=256)))


class PeakRSS:
    """Peak resident memory of this process above its level at entry, sampled every
    ``every`` s in a thread (catches numpy and torch alike); ``.peak_mb`` after exit."""

    def __init__(self, every: float = 0.05):
        self.every, self.peak_mb = every, 0.0

    @staticmethod
    def rss_mb() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:  # not Linux: the high-water mark is all there is
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def __enter__(self):
        self.start = self.rss_mb()
        self._stop = threading.Event()
        self._top = self.start

        def watch():
            while not self._stop.wait(self.every):
                self._top = max(self._top, self.rss_mb())

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self._top, self.rss_mb()) - self.start


def scale_timing(root: Path, n: int, *, k: int, threshold, index_sample: int, progress, grids: Path | None = None,
                 ratio=None, embedding: bool = DEFAULT_EMBEDDING, verifier: bool = DEFAULT_VERIFIER) -> dict:
    """Decode + describe + all-pairs search over the first n CIFAR-10 images (train, then
    test), without FiftyOne; and the key search alone by a ball tree on a query sample."""
    from curate.duplicates.choices import DEFAULT_RELATIVE, DEFAULT_THRESHOLD
    from curate.duplicates.grouping import anchored_groups, components
    from curate.duplicates.search import reference_sample
    from curate.duplicates import Descriptor, find_pairs
    from curate.duplicates.search import KeySearch

    from curate.data.cifar import tree_files

    paths = [p for _, _, p in tree_files(Path(root), "train") + tree_files(Path(root), "test")][:n]
    threshold = DEFAULT_THRESHOLD["descriptor"] if threshold is None else threshold
    out = {"images": len(paths), "load_average_before": os.getloadavg()}
    d = Descriptor()
    embeddings, embedded = None, {"images": 0, "s": 0.0}
    verify, verified = None, {"pairs": 0, "s": 0.0}

    def read_rows(rows: np.ndarray) -> np.ndarray:
        return hwc_uint8_to_nchw(read_images([paths[i] for i in rows.tolist()]))

    if verifier:  # as dedupe: the band's images the embedding read are handed on to the verifier
        from curate.duplicates.copy_verifier import sharing_reader

        read_rows = sharing_reader(read_rows)
    if embedding and ratio is not None:  # as dedupe: the band's images read again and embedded
        from curate.duplicates.copy_embedding import CopyEmbedding

        embedder = CopyEmbedding()

        def embeddings(rows):
            te = time.perf_counter()
            e = embedder.embed(read_rows(rows))
            embedded.update(images=len(rows), s=time.perf_counter() - te)
            return e
    if verifier and embeddings is not None:  # as dedupe: each pair of the band and beyond scored
        from curate.duplicates.copy_verifier import CopyVerifier

        net = CopyVerifier()

        def verify(pairs):
            tv = time.perf_counter()
            logits = net.pair_logits(read_rows, pairs)
            verified.update(pairs=len(pairs), s=time.perf_counter() - tv)
            return logits
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        keys, canvases = [], []
        for s in range(0, len(paths), 2048):  # streamed: 2,048 images decoded at a time
            x = hwc_uint8_to_nchw(read_images(paths[s:s + 2048]))
            kk, cc = d.describe(x)
            keys.append(kk)
            canvases.append(cc)
        keys, canvases = np.concatenate(keys), np.concatenate(canvases)
        out["decode_describe_s"] = time.perf_counter() - t0
        out["decode_describe_cpu_s"] = time.process_time() - c0
        t1, c1 = time.perf_counter(), time.process_time()
        res = find_pairs(keys, canvases, np.arange(len(keys)), threshold, descriptor=d, k=k,
                         relative=DEFAULT_RELATIVE, reference=reference_sample(keys), ratio=ratio,
                         embeddings=embeddings, verifier=verify, progress=progress)
        out["search_verify_s"] = time.perf_counter() - t1  # the band's embedding (and verifier) included
        out["embedded_images"], out["embed_s"] = embedded["images"], embedded["s"]
        out["verified_pairs"], out["verifier_s"] = verified["pairs"], verified["s"]
        out["search_verify_cpu_s"] = time.process_time() - c1
    out.update(total_s=out["decode_describe_s"] + out["search_verify_s"],
               total_cpu_s=out["decode_describe_cpu_s"] + out["search_verify_cpu_s"], peak_mb=mem.peak_mb,
               pairs=len(res.pairs), by_ratio=res.by_ratio, by_embedding=res.by_embedding, by_verifier=res.by_verifier, candidates=res.candidates, timings=res.timings,
               threshold_applied=res.threshold, background=res.background,
               groups=len(comps := components(len(keys), res.pairs.tolist())),
               load_average_after=os.getloadavg())
    anchored = anchored_groups(len(keys), res.pairs.tolist())
    out["largest_connected"] = max(map(len, comps), default=0)
    out.update(groups_anchored=len(anchored), tagged_anchored=sum(len(g) - 1 for g in anchored),
               largest_anchored=max(map(len, anchored), default=0))
    if grids is not None and anchored:  # the largest group of each rule, for a person to judge
        import torch

        from curate import plots

        for rule, groups in (("anchored", anchored), ("connected", comps)):
            big = max(groups, key=len)[:256]
            x = torch.from_numpy(read_images([paths[i] for i in big])).permute(0, 3, 1, 2).float() / 127.5 - 1
            plots.image_grid(x, grids / f"scale_largest_{rule}.png", ncol=16, zoom=2)
    perm = d.mirror_permutation(3)
    q = np.random.default_rng(1).choice(len(keys), min(index_sample, len(keys)), replace=False)
    for index in ("exact", "ball_tree"):
        t = time.perf_counter()
        ks = KeySearch(keys, perm, index=index)
        build = time.perf_counter() - t
        t = time.perf_counter()
        ks.neighbours(q, k)
        per_query = (time.perf_counter() - t) / len(q)
        out[f"key_search_{index}"] = {"build_s": build, "queries_timed": len(q),
                                      "s_per_query": per_query,
                                      "all_queries_s_estimate": build + per_query * len(keys)}
    return out


def environment() -> dict:
    import platform

    import torch

    return {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
