"""The score models the CLI and the App plugin offer: a checkpoint, or the exact score."""
from __future__ import annotations

import torch


def exact_score_of(samples, *, tag: str = "train", size=None, channels=None, resize: bool = False):
    """:class:`curate.ExactScore` of ``samples``' images tagged ``tag`` (float64).

    The perfectly memorizing model of that split: cheap and exact on small data
    (each evaluation touches every training image).
    """
    from curate.data.loader import load_images
    from curate.models.exact import ExactScore

    train = samples._dataset.match_tags(tag)
    if train.count() == 0:
        raise ValueError(f"no sample tagged {tag!r} to build the exact score from")
    _, images, failed = load_images(train, size=size, channels=channels, resize=resize)
    if failed:
        raise ValueError(f"{len(failed)} training image(s) unreadable, e.g. {next(iter(failed.items()))}")
    return ExactScore(images.to(torch.float64))


def resolve_model(samples, *, checkpoint=None, exact_tag: str | None = None, device=None, **policy):
    """Returns ``(model, description)`` for exactly one of ``checkpoint``/``exact_tag``."""
    if (checkpoint is None) == (exact_tag is None):
        raise ValueError("choose exactly one model: a checkpoint path or the exact score of a tag")
    if checkpoint is not None:
        from curate.models.checkpoint import load_model

        model = load_model(checkpoint)
        if device is not None and hasattr(model, "to"):
            model = model.to(device)
        return model, f"checkpoint {checkpoint}"
    model = exact_score_of(samples, tag=exact_tag, **policy)
    return model, f"ExactScore of the {model.n} samples tagged {exact_tag!r}"
