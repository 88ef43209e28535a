"""The volume-growth run as a FiftyOne brain run.

A run is stored on the dataset under the brain key = the score field, so
``dataset.list_brain_runs()`` lists it, ``dataset.get_brain_info(key).config``
holds the whole configuration (model, method, settings, versions) and
``dataset.delete_brain_run(key)`` removes it together with its fields.

The settings that decide the scores (:data:`IDENTITY`) tell whether a score field
holds this run's results (resume) or another run's (refuse unless overwriting).
"""
from __future__ import annotations

import hashlib
import platform

import fiftyone.core.brain as fob
import torch

METHOD = "curate_volume_growth"

# Config entries that determine the stored values: equal -> same run (resumable).
IDENTITY = (
    "score_field", "error_field", "logp_field", "score", "divergence", "probes",
    "model_fingerprint", "tracker_method", "stretch", "axes",
    "sigma", "steps", "t_min", "seed", "dtype", "image_size", "image_channels", "resize",
)


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


class VolumeGrowthConfig(fob.BrainMethodConfig):
    """Configuration of one volume-growth scoring run (see the module docstring)."""

    def __init__(self, score_field, error_field=None, logp_field=None, score="log_growth", divergence=None,
                 probes=1, model=None,
                 model_description=None, model_fingerprint=None, tracker_method="fd", stretch="norm", axes=1,
                 sigma=0.05, steps=1, t_min=1e-3, seed=0, dtype="float64", image_size=None,
                 image_channels=None, resize=False, versions=None, **kwargs):
        self.score_field = score_field
        self.error_field = error_field
        self.logp_field = logp_field
        self.score = score  # what score_field holds: log_growth, divergence or generation_logp
        self.divergence = divergence  # how div f was integrated (None when not needed)
        self.probes = probes
        self.model = model
        self.model_description = model_description
        self.model_fingerprint = model_fingerprint
        self.tracker_method = tracker_method  # "fd" or "jvp" (``method`` names the brain method)
        self.stretch = stretch
        self.axes = axes
        self.sigma = sigma
        self.steps = steps
        self.t_min = t_min
        self.seed = seed
        self.dtype = dtype
        self.image_size = list(image_size) if image_size is not None else None
        self.image_channels = image_channels
        self.resize = resize
        self.versions = versions
        super().__init__(**kwargs)

    @property
    def method(self):
        """The brain method's name (what ``list_brain_runs(method=...)`` matches)."""
        return METHOD

    def identity(self) -> dict:
        return {k: getattr(self, k, None) for k in IDENTITY}


class VolumeGrowth(fob.BrainMethod):
    """The brain method: knows the fields a run wrote and removes them on delete."""

    def get_fields(self, samples, brain_key):
        c = self.config
        return [f for f in (c.score_field, c.error_field, c.logp_field) if f]

    def cleanup(self, samples, brain_key):
        schema = samples._dataset.get_field_schema()
        for f in self.get_fields(samples, brain_key):
            if f in schema:
                samples._dataset.delete_sample_field(f)

    def _validate_run(self, samples, brain_key, existing_info):
        self._validate_fields_match(brain_key, "score_field", existing_info)


class VolumeGrowthResults(fob.BrainResults):
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
    """Brain keys of the volume-growth runs on ``samples``' dataset."""
    return samples.list_brain_runs(method=METHOD)
