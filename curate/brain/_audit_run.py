"""The reproduction audit as a FiftyOne brain run: its config, the fields it writes and
how it is deleted with everything it wrote.

The run lives on the *training* dataset under the brain key ``audit_key``. It owns:

* fields on the training samples (:meth:`AuditRunConfig.train_fields`): ``<key>`` (copies
  under the chosen criterion), ``<key>_<criterion>`` for every criterion, ``<key>_rate``
  with ``_low``/``_high`` (Wilson 95 %), ``<key>_group`` (exact-duplicate group) and
  ``<key>_error`` (a training image that could not be read);
* the generated dataset (``generated_dataset``: one sample per generated image) and the
  copies dataset (``copies_dataset``: grouped, slices ``generated`` / ``source``);
* the image files under ``out_dir``;
* ``p_reproduce``-style fields that :func:`curate.brain.evaluate_score` wrote (listed in
  the results).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import fiftyone.core.brain as fob

METHOD = "curate_reproductions"
#: Every copy criterion the audit records: the three pixel ones and the edit-robust one.
ALL_CRITERIA = ("carlini", "gu", "rms", "aligned")
#: Config entries that decide the stored values: a run with other values is another run.
IDENTITY = ("model_fingerprint", "method_name", "steps", "num_samples", "seed", "block_size", "criterion",
            "alpha", "n_nearest", "gu_threshold", "rms_threshold", "aligned", "aligned_threshold",
            "aligned_relative", "mirror", "dedupe", "image_shape", "train_fingerprint", "t_min")


class AuditRunConfig(fob.BrainMethodConfig):
    """Settings of one audit (each an attribute; see :func:`curate.brain.compute_reproductions`)."""

    def __init__(self, audit_key, model=None, model_description=None, model_fingerprint=None,
                 method_name="euler", steps=100, num_samples=1024, seed=0, block_size=256,
                 criterion="carlini", alpha=0.5, n_nearest=50, gu_threshold=1 / 3, rms_threshold=0.1,
                 aligned=True, aligned_threshold=None, aligned_relative=None, mirror=True, dedupe=True,
                 image_shape=None, train_fingerprint=None, t_min=None, out_dir=None,
                 generated_dataset=None, copies_dataset=None, versions=None, **kwargs):
        self.audit_key = audit_key
        self.model = model
        self.model_description = model_description
        self.model_fingerprint = model_fingerprint
        self.method_name = method_name
        self.steps = steps
        self.num_samples = num_samples
        self.seed = seed
        self.block_size = block_size
        self.criterion = criterion
        self.alpha = alpha
        self.n_nearest = n_nearest
        self.gu_threshold = gu_threshold
        self.rms_threshold = rms_threshold
        self.aligned = aligned
        self.aligned_threshold = aligned_threshold
        self.aligned_relative = aligned_relative
        self.mirror = mirror
        self.dedupe = dedupe
        self.image_shape = list(image_shape) if image_shape is not None else None
        self.train_fingerprint = train_fingerprint
        self.t_min = t_min
        self.out_dir = out_dir
        self.generated_dataset = generated_dataset
        self.copies_dataset = copies_dataset
        self.versions = versions
        super().__init__(**kwargs)

    @property
    def method(self):
        return METHOD

    @property
    def criteria(self) -> tuple:
        return ALL_CRITERIA if self.aligned else ALL_CRITERIA[:3]

    def identity(self) -> dict:
        return {k: getattr(self, k, None) for k in IDENTITY}

    def train_fields(self) -> list[str]:
        k = self.audit_key
        return [k, *(f"{k}_{c}" for c in self.criteria), f"{k}_rate", f"{k}_rate_low", f"{k}_rate_high",
                f"{k}_group", f"{k}_error"]


class AuditRun(fob.BrainMethod):
    """Deleting the run removes its fields, both datasets and its image files."""

    def get_fields(self, samples, brain_key):
        return self.config.train_fields()

    def cleanup(self, samples, brain_key):
        remove_outputs(samples._dataset, self.config, brain_key)

    def _validate_run(self, samples, brain_key, existing_info):
        pass


class AuditResults(fob.BrainResults):
    """Counts of a finished audit and the evaluations of scores against it."""

    def __init__(self, samples, config, brain_key, complete=False, summary=None, evaluations=None,
                 p_fields=None, backend=None):
        super().__init__(samples, config, brain_key, backend=backend)
        self.complete = bool(complete)
        self.summary = dict(summary or {})
        self.evaluations = dict(evaluations or {})
        self.p_fields = list(p_fields or [])

    def attributes(self):
        return ["cls", "complete", "summary", "evaluations", "p_fields"]

    @classmethod
    def _from_dict(cls, d, samples, config, brain_key):
        return cls(samples, config, brain_key, complete=d.get("complete", False), summary=d.get("summary"),
                   evaluations=d.get("evaluations"), p_fields=d.get("p_fields"))


def load_results(dataset, key) -> AuditResults | None:
    try:
        res = dataset.load_brain_results(key, cache=False)
    except Exception:  # no results stored yet (a run killed before its end)
        return None
    return res if isinstance(res, AuditResults) else None


def save_results(dataset, config: AuditRunConfig, **attrs) -> AuditResults:
    """Store (or update) the run's results; call under the dataset lock."""
    old = load_results(dataset, config.audit_key)
    kw = {"complete": False, "summary": {}, "evaluations": {}, "p_fields": []}
    if old is not None:
        kw.update(complete=old.complete, summary=old.summary, evaluations=old.evaluations, p_fields=old.p_fields)
    kw.update(attrs)
    res = AuditResults(dataset, config, config.audit_key, **kw)
    res.backend.save_run_results(dataset, config.audit_key, res, overwrite=True)
    return res


def remove_outputs(dataset, config: AuditRunConfig, key, *, keep_run_fields: bool = False) -> None:
    """Delete what the run wrote: generated and copies datasets, files, fields."""
    import fiftyone as fo

    res = load_results(dataset, key)
    fields = [] if keep_run_fields else list(config.train_fields())
    fields += list(res.p_fields) if res is not None else []
    schema = dataset.get_field_schema()
    for f in fields:
        if f in schema:
            dataset.delete_sample_field(f)
    for name in (config.generated_dataset, config.copies_dataset):
        if name and fo.dataset_exists(name):
            fo.delete_dataset(name)
    if config.out_dir and Path(config.out_dir).is_dir() and (Path(config.out_dir) / MARKER).is_file():
        shutil.rmtree(config.out_dir, ignore_errors=True)


#: A file in every folder the audit writes: only such a folder is ever removed whole.
MARKER = ".curate-audit"
