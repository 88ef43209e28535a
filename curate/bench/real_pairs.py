"""Real near-duplicate pairs of CIFAR-10, judged by eye: mining, judging grids, halves,
and how well a pair decision separates them.

``python -m curate.bench.real_pairs mine --cifar-root ../shared/data/cifar10 --out DIR``
    every candidate pair of all 60,000 images with its aligned distance
    (:mod:`curate.bench._real_pairs_mine`) -> ``DIR/candidates.csv``;
``python -m curate.bench.real_pairs grids --cifar-root ... --out DIR``
    a stratified, seeded sample of the candidates to judge, as numbered PNG grids
    (``DIR/grids/batch_NN.png`` + ``batch_NN.csv``); a person writes ``label``
    (1 / 0 / unsure) into each batch CSV;
``python -m curate.bench.real_pairs collect --out DIR``
    the judged batches -> ``curate/bench/data/cifar10_pairs.csv`` with the halves;
``python -m curate.bench.real_pairs measure --cifar-root ... --out DIR --half tuning``
    recall / pair precision of today's default decision and the distances per label,
    and the edits fitted on the positive pairs (:mod:`curate.bench._real_pairs_fit`);
``python -m curate.bench.real_pairs embedding --cifar-root ... --out DIR [--edits strong]``
    trains the learned copy-detection embedding and measures it against the aligned distance
    on one half (:mod:`curate.bench._copy_embedding`; ``--edits strong --steps 3000`` wrote the
    weights dedupe ships, :mod:`curate.duplicates.copy_embedding`);
``grids --fresh`` / ``collect --fresh`` / ``measure --fresh``
    a second reporting set, judged after every setting was chosen, apart from the first
    set's image series -> ``curate/bench/data/cifar10_pairs_fresh.csv``;
``grids --band [--fresh N]`` / ``collect --band [--fresh N]`` / ``band --half tuning|reporting [--set S]``
    the band set, drawn by aligned distance 0.2-0.45 and the copy embedding's cosine, and
    rules that let the embedding decide there (:mod:`curate.bench._real_pairs_band`)
    -> ``curate/bench/data/cifar10_pairs_band.csv``; with ``--fresh N`` fresh band set N
    (test-train pairs apart from every earlier set) -> ``cifar10_pairs_band_fresh[N].csv``;
``verifier [--negatives plain|edited] [--rules --set S --half H | --choose]``
    a prototype pair verifier (a network that sees both images), trained and measured
    beside the cosine, its rules end to end, and the rule the tuning halves choose
    (:mod:`curate.bench._pair_verifier`).
``audit [--judged [--seconds S]]``, ``audit --default [--judged]``
    what dedupe's verifier option adds to (and drops from) the default's pairs among all
    60,000 images, a random sample judged by eye, and the pre-registered rule that decides
    whether it becomes the default; the default's own pairs audited the same way
    (:mod:`curate.bench._option_audit`); ``audit --finetune N [--judged]`` the same for the
    option with the fine-tuned verifier;
``verifier --finetune N [--grids [--judged] | --crossval | --rules --set S --half H]``
    the verifier fine-tuned on judged pairs: the option's additions to judge for it, its
    cross-validated logits, it end to end (:mod:`curate.bench._verifier_finetune`);
``keys``
    the key search's candidate recall without labels: mined pairs within the threshold
    missed by the k nearest keys, and what each k costs (:func:`_real_pairs_mine.key_recall`);
``rejudge [--judged]``
    a blind second judging of a random sample of both reporting sets: how far the labels can
    be trusted (the noise ceiling), and the default and the option against the labels both
    judgings agree on (:mod:`curate.bench._rejudge`; ``--judged`` after ``audit``).

The shipped CSV has columns ``split_a,index_a,split_b,index_b,label,half,kind`` (official
indices; label 1 = the same shot, 0 = a different shot the distance ranks close; half
= tuning / reporting; kind = test-train / train-train). See ``curate/bench/data/README.md``.
"""
from __future__ import annotations

from curate.bench._real_pairs_core import (BINS, BINS_FRESH, COLUMNS, DATA, DATA_FRESH, HALVES, aligned,
                                           assign_halves, best_threshold, collect, components, distribution,
                                           evaluate, evaluate_weighted, fresh_exclusion, half_of, in_bin,
                                           judging_sample, load_pairs, pool_cells, pool_weights, read_candidates,
                                           render_grid, weighted_interval, write_grids, write_pairs)

__all__ = ["DATA", "DATA_FRESH", "COLUMNS", "HALVES", "BINS", "BINS_FRESH", "load_pairs", "components", "half_of",
           "assign_halves", "write_pairs", "evaluate", "distribution", "best_threshold", "aligned",
           "read_candidates", "fresh_exclusion", "in_bin", "pool_cells", "pool_weights", "evaluate_weighted",
           "weighted_interval", "judging_sample", "render_grid", "write_grids", "collect"]


def main(argv=None) -> None:
    """The command line (see the module docstring)."""
    from curate.bench._real_pairs_cli import main as run

    run(argv)


if __name__ == "__main__":
    main()
