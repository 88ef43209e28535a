"""The scoring runs (volume growth, denoising score) as FiftyOne brain runs.

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
DENOISING_METHOD = "curate_denoising_score"

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


class ScoreRunConfig(fob.BrainMethodConfig):
    """What every curate scoring run has: a float score field, an error field, the
    settings that decide the values (:meth:`identity`) and a results class."""

    IDENTITY: tuple = ()

    def __init__(self, score_field, error_field=None, seed=0, model=None, model_description=None,
                 model_fingerprint=None, image_size=None, image_channels=None, resize=False, versions=None,
                 **kwargs):
        self.score_field = score_field
        self.error_field = error_field
        self.seed = seed
        self.model = model
        self.model_description = model_description
        self.model_fingerprint = model_fingerprint
        self.image_size = list(image_size) if image_size is not None else None
        self.image_channels = image_channels
        self.resize = resize
        self.versions = versions
        super().__init__(**kwargs)

    def fields(self) -> list[str]:
        """The sample fields this run writes."""
        return [f for f in (self.score_field, self.error_field, getattr(self, "logp_field", None)) if f]

    def identity(self) -> dict:
        return {k: getattr(self, k, None) for k in self.IDENTITY}

    @property
    def results_cls(self):
        return VolumeGrowthResults


class VolumeGrowthConfig(ScoreRunConfig):
    """Configuration of one volume-growth scoring run (see the module docstring)."""

    IDENTITY = IDENTITY

    def __init__(self, score_field, error_field=None, logp_field=None, score="log_growth", divergence=None,
                 probes=1, tracker_method="fd", stretch="norm", axes=1, sigma=0.05, steps=1, t_min=1e-3,
                 dtype="float64", **kwargs):
        self.logp_field = logp_field
        self.score = score  # what score_field holds: log_growth, divergence or generation_logp
        self.divergence = divergence  # how div f was integrated (None when not needed)
        self.probes = probes
        self.tracker_method = tracker_method  # "fd" or "jvp" (``method`` names the brain method)
        self.stretch = stretch
        self.axes = axes
        self.sigma = sigma
        self.steps = steps
        self.t_min = t_min
        self.dtype = dtype
        super().__init__(score_field, error_field=error_field, **kwargs)

    @property
    def method(self):
        """The brain method's name (what ``list_brain_runs(method=...)`` matches)."""
        return METHOD


class DenoisingScoreConfig(ScoreRunConfig):
    """Configuration of one denoising-score run: the field holds ``-L(y)``, minus the
    denoising loss of each image at time ``t`` averaged over ``draws`` noise draws
    (:func:`curate.evaluate.denoising_loss`)."""

    IDENTITY = ("score_field", "error_field", "model_fingerprint", "t", "draws", "seed",
                "image_size", "image_channels", "resize")

    def __init__(self, score_field, error_field=None, t=0.01, draws=4, score="denoising_score", **kwargs):
        self.score = "denoising_score"
        self.t = t
        self.draws = draws
        super().__init__(score_field, error_field=error_field, **kwargs)

    @property
    def method(self):
        return DENOISING_METHOD

    @property
    def results_cls(self):
        return DenoisingScoreResults


class _ScoreRun(fob.BrainMethod):
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


class VolumeGrowth(_ScoreRun):
    """The volume-growth brain method."""


class DenoisingScore(_ScoreRun):
    """The denoising-score brain method."""


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


class DenoisingScoreResults(VolumeGrowthResults):
    """Counts of a finished denoising-score run."""


def list_runs(samples) -> list[str]:
    """Brain keys of the curate scoring runs (volume growth and denoising score) on
    ``samples``' dataset."""
    return sorted(samples.list_brain_runs(method=METHOD) + samples.list_brain_runs(method=DENOISING_METHOD))
