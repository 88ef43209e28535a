"""Near-duplicate groups of a FiftyOne collection: a thin adapter over :mod:`curate.duplicates`
(which works on arrays). :func:`dedupe` is `curate.brain.dedupe`.

Two distances (``method``):

* ``"descriptor"`` (default): the aligned distance of :mod:`curate.duplicates` -- thumbnails
  standardised per image (blind to brightness, contrast, saturation, colour casts and
  re-encoding noise) compared after the best zoom (crops up to ``max_crop`` of each side),
  shift (up to ``max_shift``) and, with ``mirror``, left-right flip. Unit vectors: 0 for
  identical images, 2 at most; :data:`DEFAULT_THRESHOLD` was chosen on planted edits of
  CIFAR-10 (docs/near-duplicates.md). Candidates are each query's ``k`` nearest *keys* (a tiny
  GIST, :mod:`curate.duplicates.descriptor`), found by an exact chunked search or a
  scikit-learn index (``index``). The keys are stored as a FiftyOne similarity index
  under ``brain_key`` (the App's "sort by similarity"; ``dataset.delete_brain_run(key)``
  removes it).
* ``"pixel"``: the normalised pixel L2 ``|x - y| / sqrt(D)`` of images in [-1, 1] (the
  root-mean-square pixel difference; the Carlini criterion's distance), found by an
  exact, chunked search in float64: every query image is compared with every image of
  the collection. Default threshold 0.1. Stores no index.

Groups: pairs within ``threshold`` where at least one image is a query image are
edges. By default (``grouping="anchored"``) the images are visited in the order of
``keep``'s preference, and each one not yet grouped keeps all its direct duplicates not
yet grouped: every member of a group is within ``threshold`` of the kept image, and no
chain of look-alikes (a ~ b ~ c, a far from c) becomes one group. ``grouping="connected"``
takes the connected components instead. In each group one sample is kept by ``keep``;
the others get ``tag``. Every member gets the group
number in ``group_field``; ``view_name`` saves the view of all members, group by group,
the kept one first.
"""
from __future__ import annotations

import numpy as np

from curate.duplicates.choices import (DEFAULT_EMBEDDING, DEFAULT_GROUPING, DEFAULT_INDEX, DEFAULT_KEEP, DEFAULT_RATIO,
                                       DEFAULT_RELATIVE, DEFAULT_THRESHOLD, DEFAULT_VERIFIER, GROUPINGS, INDEXES,
                                       KEEP_RULES, METHODS)
from curate.duplicates.grouping import anchored_groups, components, near_pairs

#: Images described as one stack (split over the descriptor's threads); at most 64 MiB held.
DESCRIBE_STACK = 2048
RUN_MARK = "curate_dedupe"  # config entry that marks a similarity index this module made


def dedupe(samples, *, threshold: float | None = None, query_tag: str | None = None,
           tag: str = "duplicate", keep: str = DEFAULT_KEEP, score_field: str | None = None,
           group_field: str = "duplicate_group", size=None, channels=None, resize: bool = False,
           batch_size: int = 256, clear: bool = True, method: str = "descriptor", mirror: bool = True,
           k: int = 10, index: str = DEFAULT_INDEX, relative: float | None = DEFAULT_RELATIVE,
           ratio: float | None = DEFAULT_RATIO, embedding: bool = DEFAULT_EMBEDDING,
           verifier: bool = DEFAULT_VERIFIER, brain_key: str | None = "dedupe",
           view_name: str | None = "duplicate_groups", spec=None, grouping: str = DEFAULT_GROUPING,
           progress=False) -> list[list[str]]:
    """Find near-duplicate groups and tag all but one member of each.

    The first step of cleaning: it needs no score (``keep="first"``), and by default it
    searches the whole collection. Then score, flag and export.

    Args:
        samples: the collection to search (a dataset or view).
        threshold: largest distance of a duplicate pair; None: :data:`DEFAULT_THRESHOLD`
            of ``method`` (descriptor 0.2, pixel 0.1 = a 5% RMS pixel difference).
        query_tag: None (default) searches all pairs of ``samples``; a tag searches only
            the duplicates of the images with that tag (e.g. ``"high_risk"``, as
            :func:`flag_high_risk` sets it).
        tag: put on every group member except the kept one.
        keep: which member stays untagged: ``"first"`` (default: the first in ``samples``'
            order; needs no score), ``"lowest_score"`` (the least reproducible copy; members
            without a score come after scored ones) or ``"highest_score"``. Ties go to the
            member earlier in ``samples``' order.
        score_field: the score that the score-based ``keep`` rules read (default: the
            field of :data:`curate.scores.DEFAULT_KIND`).
        group_field: int field set to the group number (0, 1, ...) on members.
        size, channels, resize: the image policy of :mod:`curate.data.loader`. The
            descriptor resamples every image itself, so with ``size=None`` it reads
            images of any size (``resize`` is then implied).
        clear: first remove ``tag`` and ``group_field`` from ``samples``.
        method: ``"descriptor"`` or ``"pixel"`` (see the module docstring).
        mirror: descriptor: a left-right mirrored copy counts as a duplicate.
        k: descriptor: candidates per query image (more when all k are duplicates).
        index: descriptor: ``"auto"`` (default: ``"exact"`` up to 100,000 images, FAISS's
            approximate ``"faiss_ivf"`` beyond when faiss is installed), ``"exact"`` (chunked
            BLAS search), ``"faiss"`` (exact flat index), ``"faiss_ivf"``, or a scikit-learn
            ``NearestNeighbors`` algorithm: ``"ball_tree"``, ``"kd_tree"``, ``"brute"``.
        relative: descriptor: also cap the threshold at ``relative`` times the collection's
            background distance (how close unrelated images come: the median over up to
            512 of its images of the distance to their 3rd nearest candidate), so that
            low-detail images (8x8 digits) are not grouped with their look-alikes; None: no cap.
        ratio: descriptor: a pair farther than the threshold, but within 1.75 times it, is
            also a duplicate when its distance is at most ``ratio`` times the mean of its two
            images' distances to their 7th nearest other candidate (a ratio test: a copy
            with strong edits stands out from its image's neighbours, a look-alike among
            look-alikes does not). Not where the ``relative`` cap binds (low-detail
            collections such as 8x8 digits keep the capped threshold alone). An image's
            candidates here are all its verified pairs, so a ``query_tag`` search, which
            verifies fewer pairs around an image, can decide a band pair a little more
            leniently than a search of all pairs (measured on the real CIFAR-10 pairs: one
            pair found and up to two false hits per labelled set of 400-500). None: the
            threshold alone decides.
        embedding: descriptor, with ``ratio``: a small learned copy embedding (shipped with
            curate: :mod:`curate.duplicates.copy_embedding`) judges the ratio test's pairs too:
            such a pair is a duplicate when the test keeps it and the cosine of the two
            images' embeddings is at least 0.7, or whenever the cosine is at least 0.9 (a
            copy in a crowd of look-alikes). Costs reading the band's images again and one
            pass of a 0.3 M-parameter network over them (nothing where the ratio test does
            not run). False: the ratio test alone.
        verifier: descriptor, with ``ratio`` and ``embedding``: a small learned pair verifier
            (a network that sees both images: :mod:`curate.duplicates.copy_verifier`) also
            accepts a pair of the ratio test's band that the steps before refuse when its
            logit is at least 2, and a pair up to 2.25x the threshold (0.45) at logit 4, either
            only at cosine >= 0.7. Finds more of the strongly processed copies (on real
            CIFAR-10 pairs, 0.58 of the hardest band's same-shot pairs instead of 0.41), but
            among all 60,000 CIFAR-10 images a quarter of the pairs it adds are other shots
            (0.76 the same shot; the default's own pairs 0.92; docs/near-duplicates.md). Costs
            verifying pairs to 0.45, reading their images again and a 0.44 M-parameter network
            eight times over each pair it can keep (60,000 CIFAR-10 images on 2 cores: about
            twice the default's time).
            False (default): not asked.
        brain_key: descriptor: store the keys as a FiftyOne similarity index under this
            brain key (replacing an earlier dedupe index there); None stores nothing.
        view_name: save the view of all group members under this name; None: no view.
        spec: descriptor: a :class:`curate.duplicates.DescriptorSpec` (default settings if None).
        grouping: ``"anchored"`` (default): every member of a group is a duplicate of its kept
            image (images visited in the keep rule's order; no single-link chains of
            look-alikes); ``"connected"``: connected components of the pairs (the rule the
            clean recipes' measured tables used).
        progress: True for a rich bar, or a callable ``f(fraction, label)``.

    Returns:
        the groups, each a list of sample ids with the kept sample first, numbered (and
        ordered) by their first member in ``samples``' order.
    """
    import fiftyone.core.fields as fof

    from curate.brain._names import check_field_name, check_tag

    check_tag(tag, "tag")
    check_field_name(group_field, "group_field")
    if view_name is not None:
        check_tag(view_name, "view_name")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if brain_key is not None and (not isinstance(brain_key, str) or not brain_key.isidentifier()):
        raise ValueError(f"brain_key must be a Python identifier (or None), got {brain_key!r}")
    old = samples._dataset.get_field_schema().get(group_field)
    if old is not None and not isinstance(old, fof.IntField):
        raise ValueError(f"group_field {group_field!r} already holds a {type(old).__name__}; "
                         "choose another name")
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")
    if keep not in KEEP_RULES:
        raise ValueError(f"keep must be one of {KEEP_RULES}, got {keep!r}")
    threshold = DEFAULT_THRESHOLD[method] if threshold is None else float(threshold)
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")

    if index not in INDEXES:
        raise ValueError(f"index must be one of {INDEXES}, got {index!r}")
    if relative is not None and not relative > 0:
        raise ValueError(f"relative must be > 0 (or None), got {relative!r}")
    if ratio is not None and not ratio > 0:
        raise ValueError(f"ratio must be > 0 (or None), got {ratio!r}")
    if verifier and not (method == "descriptor" and embedding and ratio is not None):
        raise ValueError("verifier=True needs method='descriptor' with a ratio and embedding=True (its "
                         f"decisions keep the embedding's cosine floor); got method={method!r}, ratio={ratio!r}, "
                         f"embedding={embedding!r}")
    if keep != "first":
        from curate.brain._names import require_score_field

        score_field = require_score_field(samples, score_field)
    dataset = samples._dataset
    if method == "descriptor" and brain_key is not None:
        _check_brain_key(dataset, brain_key)

    policy = {"size": size, "channels": channels, "resize": resize, "batch_size": batch_size}
    ids = samples.values("id")
    query_ids = set(ids) if query_tag is None else set(samples.match_tags(query_tag).values("id"))
    if method == "pixel":
        ids, pairs = _pixel_pairs(samples, query_ids, threshold, **policy)
    else:
        ids, keys, res, spec = _descriptor_pairs(samples, query_ids, threshold, spec=spec, mirror=mirror,
                                                 k=int(k), index=index, relative=relative,
                                                 ratio=ratio, embedding=embedding, verifier=verifier,
                                                 progress=progress, **policy)
        pairs = res.pairs.tolist() if res is not None else []
    groups = _ranked_groups(samples, ids, pairs, keep, score_field, grouping)
    _write_groups(samples, groups, tag, group_field, clear)
    if method == "descriptor" and brain_key is not None:
        _store_index(samples, ids, keys, brain_key, {
            "spec": spec.to_dict(), "threshold": threshold, "mirror": bool(mirror), "k": int(k),
            "index": index, "relative": relative, "ratio": ratio, "embedding": bool(embedding),
            "verifier": bool(verifier), "query_tag": query_tag, "tag": tag,
            "group_field": group_field, "groups": len(groups), "grouping": grouping,
            "threshold_applied": res.threshold if res is not None else None,
            "background": res.background if res is not None else None})
    if view_name is not None:
        _save_groups_view(samples, group_field, tag, view_name)
    return groups


def _ranked_groups(samples, ids: list[str], pairs, keep: str, score_field: str, grouping: str) -> list[list[str]]:
    """Groups of ``pairs`` (indices into ``ids``) as sample ids, the kept one first: anchored on
    the kept image (:func:`anchored_groups`) or connected components."""
    scores = {} if keep == "first" else dict(zip(*samples.values(["id", score_field])))
    sign = 1.0 if keep == "lowest_score" else -1.0

    def rank(i: int):
        s = scores.get(ids[i])
        if keep == "first":
            return (0, 0.0, i)
        return (s is None, sign * s if s is not None else 0.0, i)

    if grouping == "anchored":
        order = sorted(range(len(ids)), key=rank)
        groups = sorted(anchored_groups(len(ids), pairs, order), key=min)  # numbered in collection order
        return [[ids[i] for i in g] for g in groups]
    return [[ids[i] for i in sorted(m, key=rank)] for m in components(len(ids), pairs)]


def _write_groups(samples, groups, tag: str, group_field: str, clear: bool) -> None:
    import fiftyone.core.fields as fof

    dataset = samples._dataset
    if clear:
        samples.untag_samples(tag)
        if group_field in dataset.get_field_schema():
            samples.set_field(group_field, None).save()
    dataset.add_sample_field(group_field, fof.IntField)
    drop = [sid for g in groups for sid in g[1:]]
    if drop:
        dataset.select(drop).tag_samples(tag)
    numbers = {sid: n for n, g in enumerate(groups) for sid in g}
    if numbers:
        dataset.set_values(group_field, numbers, key_field="id")


def _descriptor_pairs(samples, query_ids, threshold, *, spec, mirror, k, index, relative, ratio, embedding,
                      verifier, progress, **policy):
    """Keys (n, d) of ``samples`` and the verified pairs (a PairResult, None without queries)."""
    from curate._progress import progress as progress_bar
    from curate.duplicates.search import find_pairs, reference_sample

    ids, keys, canvases, descriptor = _describe(samples, spec, progress=progress, **policy)
    # the embedding judges only the ratio test's band: its images are read again when asked
    read = _band_reader(samples, ids, descriptor, **policy)
    verify = None
    if verifier and embedding and ratio is not None:  # both ask for the same images, in turn
        from curate.duplicates.copy_verifier import sharing_reader

        read = sharing_reader(read)
        verify = _band_verifier(read)
    embeddings = _band_embedder(read) if embedding and ratio is not None else None
    qidx = np.array([i for i, sid in enumerate(ids) if sid in query_ids], dtype=np.int64)
    res = None
    if len(qidx):
        with progress_bar(len(ids), "dedupe: verifying candidates", progress) as advance:
            res = find_pairs(keys, canvases, qidx, threshold, descriptor=descriptor, mirror=mirror, k=k,
                             index=index, relative=relative, reference=reference_sample(keys), ratio=ratio,
                             embeddings=embeddings, verifier=verify, progress=advance)
    return ids, keys, res, descriptor.spec


def _pixel_pairs(samples, query_ids, threshold, **policy):
    from curate.data.loader import load_images

    ids, images, failed = load_images(samples, **policy)
    _refuse_failed(failed)
    flat = images.reshape(len(ids), -1)
    qidx = [i for i, sid in enumerate(ids) if sid in query_ids]
    found = near_pairs(flat[qidx], flat, threshold) if qidx else []
    return ids, [(qidx[i], j) for i, j, _ in found]


def _band_reader(samples, ids: list[str], descriptor, *, size, channels, resize, batch_size):
    """A function rows (m,) -> the images (m, C, H, W) in [-1, 1] of samples ``ids[rows]``,
    read again with the policy the descriptor read them with."""
    from curate.data.loader import load_images

    if size is None:
        size, resize = (descriptor.spec.work,) * 2, True

    def read(rows: np.ndarray) -> np.ndarray:
        want = [ids[i] for i in rows.tolist()]
        got, images, failed = load_images(samples.select(want), size=size, channels=channels, resize=resize,
                                          batch_size=batch_size)
        _refuse_failed(failed)
        at = {sid: j for j, sid in enumerate(got)}
        return images.numpy()[[at[sid] for sid in want]]

    return read


def _band_embedder(read):
    """A function rows (m,) -> the copy embeddings (e, em) (m, 128) of the images ``read`` gives."""
    from curate.duplicates.copy_embedding import CopyEmbedding

    embedder = CopyEmbedding()
    return lambda rows: embedder.embed(read(rows))


def _band_verifier(read):
    """A function pairs (m, 2) of rows -> the pair verifier's (m,) logits of the images ``read`` gives."""
    from curate.duplicates.copy_verifier import CopyVerifier

    net = CopyVerifier()
    return lambda pairs: net.pair_logits(read, pairs)


def _describe(samples, spec, *, size, channels, resize, batch_size, progress):
    """Stream the images batch by batch into keys (n, d) and canvases (n, C, h, h)."""
    from curate._progress import progress as progress_bar
    from curate.data.loader import iter_batches
    from curate.duplicates import Descriptor

    from curate.duplicates import DescriptorSpec

    if isinstance(spec, dict):
        spec = DescriptorSpec(**spec)
    descriptor = Descriptor(spec)
    if size is None:  # the descriptor resamples to its working size anyway
        size, resize = (descriptor.spec.work,) * 2, True
    ids, keys, canvases, failed, held = [], [], [], {}, []

    def describe_held():  # batches gathered into stacks large enough for the descriptor's threads
        if held:
            kk, cc = descriptor.describe(np.concatenate(held))
            keys.append(kk)
            canvases.append(cc)
            held.clear()

    with progress_bar(samples.count(), "dedupe: describing images", progress) as advance:
        for b in iter_batches(samples, batch_size=batch_size, size=size, channels=channels, resize=resize):
            failed.update(b.failed)
            if len(b.ids):
                held.append(b.images.numpy())
                ids += b.ids
                if sum(map(len, held)) >= DESCRIBE_STACK or sum(h.nbytes for h in held) >= 2 ** 26:
                    describe_held()
            advance(len(b.ids) + len(b.failed))
        describe_held()
    _refuse_failed(failed)
    if not ids:
        return [], np.zeros((0, 1), np.float32), np.zeros((0, 1, 1, 1), np.float32), descriptor
    return ids, np.concatenate(keys), np.concatenate(canvases), descriptor


def _refuse_failed(failed: dict) -> None:
    if failed:
        raise ValueError(f"{len(failed)} image(s) could not be read for dedupe, e.g. "
                         f"{next(iter(failed.items()))}; fix them or exclude them from the view")


def _check_brain_key(dataset, brain_key: str) -> None:
    """Refuse a brain key that holds another kind of run (nothing is replaced)."""
    if brain_key in dataset.list_brain_runs():
        config = dataset.get_brain_info(brain_key).config
        if getattr(config, RUN_MARK, None) is None:
            raise ValueError(f"brain key {brain_key!r} holds another run ({type(config).__name__}); "
                             "pass another brain_key, or delete that run first")


def _store_index(samples, ids, keys, brain_key: str, settings: dict) -> None:
    """The keys as a FiftyOne similarity index (sklearn backend, Euclidean distance:
    the App's "sort by similarity" ranks by the same key distance as the candidates)."""
    import fiftyone.brain as fob

    dataset = samples._root_dataset
    if brain_key in dataset.list_brain_runs():
        dataset.delete_brain_run(brain_key)
    if samples.values("id") != ids:  # cannot happen: no image failed, loader order kept
        raise RuntimeError("dedupe: sample order changed while describing; rerun")
    fob.compute_similarity(samples, embeddings=keys, backend="sklearn", metric="euclidean",
                           brain_key=brain_key, progress=False, **{RUN_MARK: settings})


def _save_groups_view(samples, group_field: str, tag: str, view_name: str) -> None:
    """Members of every group, group by group, the kept (untagged) one first."""
    from fiftyone import ViewField as F

    view = samples.exists(group_field).sort_by([(F(group_field), 1), (F("tags").contains(tag), 1)])
    samples._dataset.save_view(view_name, view, overwrite=True)
