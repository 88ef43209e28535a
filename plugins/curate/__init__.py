"""The curate FiftyOne plugin: forms that call :mod:`curate.brain`.

Operators: compute_score (any registered score kind; its form is generated from
curate.scores; delegation allowed, progress reported), flag_high_risk, dedupe,
export_clean. Panel: volume_growth_histogram.
Each operator only builds its form and calls the library; nothing is computed here.
"""
import numpy as np

import fiftyone.operators as foo
import fiftyone.operators.types as types


def _float_fields(ctx):
    import fiftyone.core.fields as fof

    schema = ctx.dataset.get_field_schema(ftype=fof.FloatField) if ctx.dataset else {}
    return sorted(schema)


def _choose_field(inputs, ctx, name="score_field", default="volume_growth", label="Score field"):
    fields = _float_fields(ctx)
    if fields:
        choices = types.Dropdown()
        for f in fields:
            choices.add_choice(f, label=f)
        inputs.enum(name, choices.values(), view=choices, label=label,
                    default=default if default in fields else fields[0], required=True)
    else:
        inputs.str(name, label=label, default=default, required=True)


def _model_inputs(inputs, ctx):
    model = types.RadioGroup()
    model.add_choice("exact", label="Exact score of a tagged split (memorizing model)")
    model.add_choice("checkpoint", label="Checkpoint file (safetensors)")
    inputs.enum("model", model.values(), view=model, default="exact", required=True)
    if ctx.params.get("model", "exact") == "checkpoint":
        inputs.str("checkpoint", label="Checkpoint path", required=True)
    else:
        inputs.str("train_tag", label="Training-split tag", default="train", required=True)


def _resolve_model(ctx, view):
    from curate.brain.model_source import resolve_model

    p = ctx.params
    return resolve_model(
        view,
        checkpoint=p.get("checkpoint") if p.get("model") == "checkpoint" else None,
        exact_tag=p.get("train_tag", "train") if p.get("model", "exact") == "exact" else None,
    )


class _ScoreOperator(foo.Operator):
    """What both scoring operators do around their one library call (``_score``):
    resolve the model, report progress, reload the App, return the counts."""

    def _score(self, view, model, description, params, progress):
        raise NotImplementedError

    def execute(self, ctx):
        view = ctx.target_view()
        model, description = _resolve_model(ctx, view)
        summary = self._score(view, model, description, ctx.params,
                              lambda frac, label: ctx.set_progress(progress=frac, label=label))
        if not ctx.delegated:
            ctx.ops.reload_dataset()
        return {"scored": summary.scored, "failed": summary.failed, "skipped": summary.skipped}

    def resolve_output(self, ctx):
        outputs = types.Object()
        for k in ("scored", "failed", "skipped"):
            outputs.int(k, label=k)
        return types.Property(outputs)


class ComputeScore(_ScoreOperator):
    """Any registered risk score: the form lists curate.scores' kinds and, for the chosen
    one, an input per setting with the kind's default and range."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="compute_score",
            label="curate: compute a risk score",
            description="Score how easily a diffusion model reproduces each image (higher = more at risk)",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        from curate import scores

        inputs = types.Object()
        choice = types.Dropdown()
        for k in scores.kinds():
            choice.add_choice(k.name, label=k.name, description=k.summary)
        inputs.enum("score", choice.values(), view=choice, default="log_growth", required=True,
                    label="Score")
        kind = scores.get(ctx.params.get("score") or "log_growth")
        inputs.str("score_field", label="Score field", default=kind.field, required=True)
        _model_inputs(inputs, ctx)
        for prm in kind.params:
            _param_input(inputs, prm)
        inputs.int("seed", label="Seed", default=0)
        inputs.int("batch_size", label="Batch size", default=64, min=1)
        inputs.bool("overwrite", label="Overwrite another run's scores", default=False)
        return types.Property(inputs, view=types.View(label="Compute a risk score"))

    def _score(self, view, model, description, p, progress):
        import curate.brain as cb
        from curate import scores

        kind = scores.get(p.get("score") or "log_growth")
        settings = {prm.name: p[prm.name] for prm in kind.params if p.get(prm.name) is not None}
        return cb.compute_score(
            view, model, kind.name, score_field=p.get("score_field") or kind.field,
            seed=int(p.get("seed", 0)), batch_size=int(p.get("batch_size", 64)),
            model_description=description, overwrite=bool(p.get("overwrite", False)), progress=progress,
            **settings,
        )


def _param_input(inputs, prm):
    """One form input for a score setting (``curate.scores.Param``)."""
    label = f"{prm.name}: {prm.help}"
    if prm.choices is not None:
        group = types.RadioGroup()
        for c in prm.choices:
            group.add_choice(c, label=str(c))
        inputs.enum(prm.name, group.values(), view=group, default=prm.default, label=label)
        return
    bounds = {k: v for k, v in (("min", prm.low), ("max", prm.high)) if v is not None}
    if prm.type is bool:
        inputs.bool(prm.name, label=label, default=prm.default)
    elif prm.type is int:
        inputs.int(prm.name, label=label, default=prm.default, **bounds)
    elif prm.type is float:
        inputs.float(prm.name, label=label, default=prm.default, **bounds)
    else:
        inputs.str(prm.name, label=label, default=prm.default)


class FlagHighRisk(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="flag_high_risk", label="curate: flag high-risk images",
                                  dynamic=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        _choose_field(inputs, ctx)
        rule = types.RadioGroup()
        for r in ("top_k", "percentile", "threshold"):
            rule.add_choice(r, label=r)
        inputs.enum("rule", rule.values(), view=rule, default="top_k", required=True)
        r = ctx.params.get("rule", "top_k")
        if r == "top_k":
            inputs.int("value", label="k", default=10, min=0, required=True)
        elif r == "percentile":
            inputs.float("value", label="percentile", default=95.0, min=0, max=100, required=True)
        else:
            inputs.float("value", label="threshold", required=True)
        if r == "top_k":
            inputs.bool("unique", label="Count each duplicate group once (needs 'find near-duplicates' first)",
                        default=False)
        inputs.str("tag", label="Tag", default="high_risk", required=True)
        return types.Property(inputs, view=types.View(label="Flag high-risk images"))

    def execute(self, ctx):
        import curate.brain as cb

        p = ctx.params
        rule = p.get("rule", "top_k")
        value = p["value"]
        kwargs = {rule: int(value) if rule == "top_k" else float(value)}
        view = cb.flag_high_risk(ctx.target_view(), p.get("score_field", "volume_growth"),
                                 tag=p.get("tag", "high_risk"), unique=bool(p.get("unique", False)), **kwargs)
        ctx.ops.reload_dataset()
        return {"flagged": view.count()}


class Dedupe(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="dedupe", label="curate: find near-duplicates",
                                  dynamic=True, allow_delegated_execution=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.float("threshold", label="Distance threshold (RMS pixel difference, [-1,1] scale)",
                     default=0.1, min=0)
        inputs.str("query_tag", label="Search duplicates of images tagged", default="high_risk")
        keep = types.RadioGroup()
        for k in ("lowest_score", "highest_score", "first"):
            keep.add_choice(k, label=k)
        inputs.enum("keep", keep.values(), view=keep, default="lowest_score")
        _choose_field(inputs, ctx)
        inputs.str("tag", label="Tag for duplicates", default="duplicate")
        return types.Property(inputs, view=types.View(label="Find near-duplicates"))

    def execute(self, ctx):
        import curate.brain as cb

        p = ctx.params
        groups = cb.dedupe(ctx.target_view(), threshold=float(p.get("threshold", 0.1)),
                           query_tag=p.get("query_tag") or None, keep=p.get("keep", "lowest_score"),
                           score_field=p.get("score_field", "volume_growth"),
                           tag=p.get("tag", "duplicate"))
        if not ctx.delegated:
            ctx.ops.reload_dataset()
        return {"groups": len(groups), "tagged": sum(len(g) - 1 for g in groups)}


class ExportClean(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="export_clean", label="curate: export the clean dataset",
                                  allow_delegated_execution=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("export_dir", label="Export directory", required=True)
        inputs.list("exclude_tags", types.String(), label="Leave out samples tagged",
                    default=["duplicate"])
        inputs.str("dataset_type", label="fiftyone.types dataset type",
                   default="ImageClassificationDirectoryTree")
        inputs.str("label_field", label="Label field", default="ground_truth")
        inputs.bool("overwrite", label="Replace a non-empty export directory", default=False)
        return types.Property(inputs, view=types.View(label="Export clean dataset"))

    def execute(self, ctx):
        import curate.brain as cb

        p = ctx.params
        n = cb.export_clean(ctx.target_view(), p["export_dir"],
                            dataset_type=p.get("dataset_type") or None,
                            label_field=p.get("label_field", "ground_truth"),
                            exclude_tags=tuple(p.get("exclude_tags") or ()),
                            overwrite=bool(p.get("overwrite", False)))
        return {"exported": n}


def histogram_data(samples, field, bins=30):
    """(counts, edges) of the finite values of ``field``; the panel's numbers."""
    values = np.asarray([v for v in samples.values(field) if v is not None], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [], []
    counts, edges = np.histogram(values, bins=bins)
    return counts.tolist(), edges.tolist()


class VolumeGrowthHistogram(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(name="volume_growth_histogram", label="curate: volume growth")

    def on_load(self, ctx):
        self._refresh(ctx)

    def on_change_view(self, ctx):
        self._refresh(ctx)

    def _refresh(self, ctx):
        fields = _float_fields(ctx)
        field = ctx.panel.state.score_field
        if field not in fields:
            field = "volume_growth" if "volume_growth" in fields else (fields[0] if fields else None)
        ctx.panel.state.score_field = field
        counts, edges = histogram_data(ctx.view, field) if field else ([], [])
        centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        ctx.panel.data.histogram = [{"type": "bar", "x": centers, "y": counts, "name": field}]
        ctx.panel.state.summary = f"{sum(counts)} scored samples in this view" if field else \
            "no float field yet: run 'curate: compute volume growth'"

    def render(self, ctx):
        panel = types.Object()
        panel.md(ctx.panel.state.summary or "", name="summary")
        panel.plot("histogram", layout={"title": "log volume growth (higher = easier to reproduce)",
                                        "xaxis": {"title": ctx.panel.state.score_field},
                                        "yaxis": {"title": "samples"}})
        return types.Property(panel, view=types.GridView(height=100, width=100))


def register(p):
    p.register(ComputeScore)
    p.register(FlagHighRisk)
    p.register(Dedupe)
    p.register(ExportClean)
    p.register(VolumeGrowthHistogram)
