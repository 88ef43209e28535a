"""curate's scoring runs as FiftyOne brain runs: one config class for every score kind.

A run is stored on the dataset under the brain key = the score field, so
``dataset.list_brain_runs()`` lists it, ``dataset.get_brain_info(key).config`` holds the
whole configuration (score kind, its settings, model, image policy, versions) and
``dataset.delete_brain_run(key)`` removes it together with its fields. The brain method
name is the kind's (``curate_volume_growth`` for the three tracker kinds).

:meth:`ScoreRunConfig.identity` -- the settings that decide the stored values -- tells
whether a score field holds this run's results (resume) or another run's (refuse unless
overwriting).
"""
from __future__ import annotations

import hashlib
import platform

import fiftyone.core.brain as fob
import torch

#: Config entries of every run that decide the stored values (the kind's settings join them).
BASE_IDENTITY = ("score", "score_field", "error_field", "extra_fields", "seed", "model_fingerprint",
                 "image_size", "image_channels", "resize")


def model_fingerprint(model) -> str:
    """sha256 over a model's tensors: its ``state_dict()`` for a torch module, else the
    tensors among its attributes (ExactScore's training set). Names the weights, not
    the Python object, so a reloaded checkpoint matches its earlier run."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    if isinstance(model, torch.nn.Module):
        items = sorted(model.state_dict().items())
    else:
        items = sorted((k, v) for k, v in vars(model).items() if isinstance(v, torch.Tensor))
        inner = [v for v in vars(model).values() if hasattr(v, "eps") or isinstance(v, torch.nn.Module)]
        for sub in inner:  # wrappers around another model
            h.update(model_fingerprint(sub).encode())
    for name, t in items:
        t = t.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def versions() -> dict:
    """Versions that can change the numbers."""
    import fiftyone as fo
    import numpy as np

    import curate

    return {
        "curate": curate.__version__, "torch": torch.__version__, "numpy": np.__version__,
        "fiftyone": fo.__version__, "python": platform.python_version(),
    }


class ScoreRunConfig(fob.BrainMethodConfig):
    """One scoring run: the score kind ``score``, its settings (each an attribute, under
    the kind's ``Param.stored_as`` name), the fields it writes and the model it used.

    ``extra_fields`` maps further outputs of the kind to fields (e.g.
    ``{"generation_logp": "logp"}``).
    """

    def __init__(self, score_field, score=None, error_field=None, extra_fields=None, seed=0,
                 model=None, model_description=None, model_fingerprint=None, image_size=None,
                 image_channels=None, resize=False, versions=None, **settings):
        from curate.scores import resolve_kind

        self.score_field = score_field
        self.score = resolve_kind(score)
        self.error_field = error_field
        self.extra_fields = dict(extra_fields or {})
        self.seed = seed
        self.model = model
        self.model_description = model_description
        self.model_fingerprint = model_fingerprint
        self.image_size = list(image_size) if image_size is not None else None
        self.image_channels = image_channels
        self.resize = resize
        self.versions = versions
        super().__init__(**settings)  # the kind's settings, as attributes

    @property
    def kind(self):
        """The registered :class:`curate.scores.ScoreKind` of this run."""
        from curate import scores

        return scores.get(self.score)

    @property
    def method(self):
        """The brain method's name (what ``list_brain_runs(method=...)`` matches)."""
        try:
            return self.kind.brain_method
        except ValueError:  # a kind this process has not registered
            return "curate_" + str(self.score)

    @property
    def settings(self) -> dict:
        """The kind's settings by parameter name."""
        return {p.name: getattr(self, p.stored_as, None) for p in self.kind.params}

    def fields(self) -> list[str]:
        """The sample fields this run writes."""
        return [f for f in (self.score_field, self.error_field, *self.extra_fields.values()) if f]

    def identity(self) -> dict:
        names = BASE_IDENTITY + tuple(p.stored_as for p in self.kind.params)
        return {k: getattr(self, k, None) for k in names}


class ScoreRun(fob.BrainMethod):
    """A scoring run: knows the fields it wrote and removes them on delete."""

    def get_fields(self, samples, brain_key):
        return self.config.fields()

    def cleanup(self, samples, brain_key):
        schema = samples._dataset.get_field_schema()
        for f in self.get_fields(samples, brain_key):
            if f in schema:
                samples._dataset.delete_sample_field(f)

    def _validate_run(self, samples, brain_key, existing_info):
        self._validate_fields_match(brain_key, "score_field", existing_info)


class ScoreResults(fob.BrainResults):
    """Counts of a finished run: ``scored``, ``failed`` and ``skipped`` (resumed)."""

    def __init__(self, samples, config, brain_key, scored=0, failed=0, skipped=0, backend=None):
        super().__init__(samples, config, brain_key, backend=backend)
        self.scored = int(scored)
        self.failed = int(failed)
        self.skipped = int(skipped)

    def attributes(self):
        return ["cls", "scored", "failed", "skipped"]

    @classmethod
    def _from_dict(cls, d, samples, config, brain_key):
        return cls(samples, config, brain_key, scored=d.get("scored", 0),
                   failed=d.get("failed", 0), skipped=d.get("skipped", 0))


def list_runs(samples) -> list[str]:
    """Brain keys of the curate scoring runs (every score kind) on ``samples``' dataset."""
    from curate import scores

    methods = sorted({k.brain_method for k in scores.kinds()})
    return sorted(key for m in methods for key in samples.list_brain_runs(method=m))
