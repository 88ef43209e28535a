"""The curate FiftyOne plugin: forms that call :mod:`curate.brain`.

Operators, in the order of a cleaning: dedupe (step 1, needs no score), compute_score
(step 2: any registered score kind; its form is generated from curate.scores; delegation
allowed, progress reported), flag_high_risk (step 3), export_clean (step 4); and
compute_reproductions (the reproduction audit: what the model copies). Panels:
score_histogram, score_vs_copies (a score against an audit's copies). Each operator only builds its form and calls the library; nothing is
computed here, and a value the form leaves empty is passed as None so that the library's
own default applies (one set of defaults for the Python API, the CLI and the App).
"""
import numpy as np

import fiftyone.operators as foo
import fiftyone.operators.types as types


def _default(func_name: str, arg: str):
    """The default of ``curate.brain.<func_name>``'s argument ``arg``: forms show the library's
    own defaults (read from its signature), never a copy of them."""
    import inspect

    import curate.brain as cb

    return inspect.signature(getattr(cb, func_name)).parameters[arg].default


def _given(params: dict, *names) -> dict:
    """The form values among ``names`` that were given (not missing, None or empty): the
    others are left to the library's defaults."""
    return {n: params[n] for n in names if params.get(n) not in (None, "")}


def _float_fields(ctx):
    import fiftyone.core.fields as fof

    schema = ctx.dataset.get_field_schema(ftype=fof.FloatField) if ctx.dataset else {}
    return sorted(schema)


def _default_field() -> str:
    """The field compute_score offers first (the default score kind's)."""
    from curate import scores

    return scores.field_of(None)


def _choose_field(inputs, ctx, name="score_field", default=None, label="Score field"):
    default = default or _default_field()
    fields = _float_fields(ctx)
    if fields:
        choices = types.Dropdown()
        for f in fields:
            choices.add_choice(f, label=f)
        inputs.enum(name, choices.values(), view=choices, label=label,
                    default=default if default in fields else fields[0])
    else:  # left empty, the library's default field is used
        inputs.str(name, label=label, default=default)


def _model_inputs(inputs, ctx):
    model = types.RadioGroup()
    model.add_choice("exact", label="Exact score of a tagged split (memorizing model)")
    model.add_choice("checkpoint", label="Checkpoint file (safetensors)")
    inputs.enum("model", model.values(), view=model, default="exact")
    if ctx.params.get("model", "exact") == "checkpoint":
        inputs.str("checkpoint", label="Checkpoint path", required=True)
    else:
        inputs.str("train_tag", label="Training-split tag", default="train")


def _resolve_model(ctx, view):
    from curate.brain.model_source import resolve_model

    p = ctx.params
    return resolve_model(
        view,
        checkpoint=p.get("checkpoint") if p.get("model") == "checkpoint" else None,
        exact_tag=(p.get("train_tag") or "train") if (p.get("model") or "exact") == "exact" else None,
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
            label="curate 2/4: compute a risk score",
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
        inputs.enum("score", choice.values(), view=choice, default=scores.DEFAULT_KIND,
                    label="Score")
        kind = scores.get(ctx.params.get("score") or scores.DEFAULT_KIND)
        inputs.str("score_field", label="Score field", default=kind.field)
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

        kind = scores.get(scores.resolve_kind(p.get("score") or None))
        settings = {prm.name: p[prm.name] for prm in kind.params if p.get(prm.name) is not None}
        return cb.compute_score(
            view, model, kind.name, score_field=p.get("score_field") or None,
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
        return foo.OperatorConfig(name="flag_high_risk", label="curate 3/4: flag high-risk images",
                                  dynamic=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        _choose_field(inputs, ctx)
        rule = types.RadioGroup()
        for r in ("top_k", "percentile", "threshold"):
            rule.add_choice(r, label=r)
        inputs.enum("rule", rule.values(), view=rule, default="top_k")
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
        inputs.str("tag", label="Tag", default=_default("flag_high_risk", "tag"))
        return types.Property(inputs, view=types.View(label="Flag high-risk images"))

    def execute(self, ctx):
        import curate.brain as cb

        p = ctx.params
        rule = p.get("rule") or "top_k"
        value = p["value"]
        kwargs = {rule: int(value) if rule == "top_k" else float(value)}
        view = cb.flag_high_risk(ctx.target_view(), p.get("score_field") or None,
                                 unique=bool(p.get("unique", False)), **_given(p, "tag"), **kwargs)
        ctx.ops.reload_dataset()
        return {"flagged": view.count()}


class Dedupe(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="dedupe", label="curate 1/4: find near-duplicates",
                                  dynamic=True, allow_delegated_execution=True)

    def resolve_input(self, ctx):
        from curate.duplicates.choices import DEFAULT_KEEP, DEFAULT_THRESHOLD, KEEP_RULES

        inputs = types.Object()
        method = types.RadioGroup()
        method.add_choice("descriptor", label="descriptor: survives re-encoding, shifts, crops, "
                                              "brightness/colour changes and mirroring")
        method.add_choice("pixel", label="pixel: RMS pixel difference (exact copies, the Carlini distance)")
        inputs.enum("method", method.values(), view=method, default=_default("dedupe", "method"))
        m = ctx.params.get("method") or _default("dedupe", "method")
        if m == "descriptor":
            inputs.float("threshold", label="Distance threshold (aligned descriptor distance, 0..2)",
                         default=DEFAULT_THRESHOLD["descriptor"], min=0, max=2)
            inputs.bool("mirror", label="A mirrored copy is a duplicate", default=_default("dedupe", "mirror"))
            inputs.str("brain_key", label="Store the similarity index under brain key",
                       default=_default("dedupe", "brain_key"))
        else:
            inputs.float("threshold", label="Distance threshold (RMS pixel difference, [-1,1] scale)",
                         default=DEFAULT_THRESHOLD["pixel"], min=0)
        inputs.str("query_tag", label="Only duplicates of images tagged (empty: all pairs)", default="")
        keep = types.RadioGroup()
        for k in KEEP_RULES:
            keep.add_choice(k, label=k + (" (needs no score)" if k == "first" else ""))
        inputs.enum("keep", keep.values(), view=keep, default=DEFAULT_KEEP)
        if (ctx.params.get("keep") or DEFAULT_KEEP) != "first":
            _choose_field(inputs, ctx)
        grouping = types.RadioGroup()
        grouping.add_choice("anchored", label="anchored: every member a duplicate of the kept image")
        grouping.add_choice("connected", label="connected: chains of look-alikes join")
        inputs.enum("grouping", grouping.values(), view=grouping, default=_default("dedupe", "grouping"))
        inputs.str("tag", label="Tag for duplicates", default=_default("dedupe", "tag"))
        return types.Property(inputs, view=types.View(label="Find near-duplicates"))

    def execute(self, ctx):
        import curate.brain as cb

        p = ctx.params
        kw = _given(p, "method", "threshold", "query_tag", "keep", "score_field", "tag", "grouping")
        if (p.get("method") or _default("dedupe", "method")) == "descriptor":
            kw.update(_given(p, "mirror", "brain_key"))
        groups = cb.dedupe(ctx.target_view(),
                           progress=lambda frac, label: ctx.set_progress(progress=frac, label=label), **kw)
        if not ctx.delegated:
            ctx.ops.reload_dataset()
            if groups:  # show the groups, group by group, the kept member first
                ctx.ops.set_view(name="duplicate_groups")
        return {"groups": len(groups), "tagged": sum(len(g) - 1 for g in groups)}


class ExportClean(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="export_clean", label="curate 4/4: export the clean dataset",
                                  allow_delegated_execution=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("export_dir", label="Export directory", required=True)
        inputs.list("exclude_tags", types.String(), label="Leave out samples tagged",
                    default=list(_default("export_clean", "exclude_tags")))
        inputs.str("dataset_type", label="fiftyone.types dataset type (empty: class folders when "
                                          "labelled, else a plain image folder)", default="")
        inputs.str("label_field", label="Label field (empty: ground_truth or the only classification field, "
                                        "if any)", default="")
        inputs.bool("overwrite", label="Replace a non-empty export directory", default=False)
        return types.Property(inputs, view=types.View(label="Export clean dataset"))

    def execute(self, ctx):
        import curate.brain as cb

        p = ctx.params
        kw = _given(p, "dataset_type", "label_field")
        if p.get("exclude_tags") is not None:  # an empty list leaves nothing out
            kw["exclude_tags"] = tuple(p["exclude_tags"])
        n = cb.export_clean(ctx.target_view(), p["export_dir"], overwrite=bool(p.get("overwrite", False)), **kw)
        return {"exported": n}


class ComputeReproductions(foo.Operator):
    """The reproduction audit (curate.brain.compute_reproductions) of the current view."""

    @property
    def config(self):
        return foo.OperatorConfig(name="compute_reproductions", label="curate: audit what the model copies",
                                  dynamic=True, allow_immediate_execution=True, allow_delegated_execution=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        _model_inputs(inputs, ctx)
        inputs.int("num_samples", label="Generated samples", default=_default("compute_reproductions", "num_samples"), min=1)
        inputs.str("audit_key", label="Audit key (brain key, field prefix)", default=_default("compute_reproductions", "audit_key"))
        crit = types.RadioGroup()
        for c in ("carlini", "gu", "rms", "aligned"):
            crit.add_choice(c, label=c)
        inputs.enum("criterion", crit.values(), view=crit, default=_default("compute_reproductions", "criterion"))
        for name, label in (("steps", "Sampler steps"), ("seed", "Seed"), ("batch_size", "Samples per block")):
            inputs.int(name, label=label, default=_default("compute_reproductions", name))
        inputs.bool("overwrite", label="Replace another audit under this key", default=False)
        return types.Property(inputs, view=types.View(label="Audit what the model copies"))

    def execute(self, ctx):
        import curate.brain as cb

        view = ctx.target_view()
        model, description = _resolve_model(ctx, view)
        s = cb.compute_reproductions(view, model, model_description=description,
                                     progress=lambda frac, label: ctx.set_progress(progress=frac, label=label),
                                     **_given(ctx.params, "num_samples", "audit_key", "criterion", "steps", "seed",
                                              "batch_size", "overwrite"))
        if not ctx.delegated:
            ctx.ops.reload_dataset()
        return {"generated": s.generated, "copies": s.copies, "reproduced": s.reproduced,
                "copies_dataset": s.copies_dataset}


def histogram_data(samples, field, bins=30):
    """(counts, edges) of the finite values of ``field``; the panel's numbers."""
    values = np.asarray([v for v in samples.values(field) if v is not None], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [], []
    counts, edges = np.histogram(values, bins=bins)
    return counts.tolist(), edges.tolist()


class _FieldPanel(foo.Panel):
    """A panel about one float field of the current view: it redraws (``_refresh``) when it
    loads, when the view changes and when its field dropdown picks another field."""

    def on_load(self, ctx):
        self._refresh(ctx)

    def on_change_view(self, ctx):
        self._refresh(ctx)

    def on_change_field(self, ctx):
        ctx.panel.state.score_field = ctx.params.get("value")
        self._refresh(ctx)

    #: with neither the chosen field nor the default kind's field present: show the first
    #: float field (True) or none (False)
    FIRST_FIELD_FALLBACK = True

    def _refresh(self, ctx):
        raise NotImplementedError

    def _pick_field(self, ctx):
        """The field to show (the dropdown's, else the default kind's, else see
        FIRST_FIELD_FALLBACK), stored in the panel state."""
        fields = _float_fields(ctx)
        field = ctx.panel.state.score_field
        if field not in fields:
            default = _default_field()
            field = default if default in fields else (
                fields[0] if fields and self.FIRST_FIELD_FALLBACK else None)
        ctx.panel.state.score_field = field
        return field

    def _field_dropdown(self, ctx, panel):
        """The "Score field" dropdown of the float fields, when there are any."""
        fields = _float_fields(ctx)
        if fields:
            choices = types.Dropdown()
            for f in fields:
                choices.add_choice(f, label=f)
            panel.enum("score_field", choices.values(), view=choices, label="Score field",
                       default=ctx.panel.state.score_field, on_change=self.on_change_field)


class ScoreHistogram(_FieldPanel):
    """Histogram of any float field of the current view, and its top images (click one
    to open it; a button shows them all, highest first, in the grid)."""

    TOP = 8

    @property
    def config(self):
        # the name stays: App workspaces saved with the panel keep finding it
        return foo.PanelConfig(name="score_histogram", label="curate: score histogram")

    def show_top(self, ctx):
        field = ctx.panel.state.score_field
        if field:
            ctx.ops.set_view(view=ctx.view.exists(field).sort_by(field, reverse=True))

    def open_sample(self, ctx):
        sid = ctx.params.get("id")
        if sid:
            ctx.ops.set_view(view=ctx.dataset.select(sid))

    @staticmethod
    def top_images(samples, field, k):
        """[(id, filepath, value)] of the k highest finite values of ``field``, highest first."""
        import fiftyone as fo

        top = samples.match(fo.ViewField(field).exists()).sort_by(field, reverse=True)
        rows = [r for r in zip(*top.limit(4 * k).values(["id", "filepath", field])) if np.isfinite(r[2])]
        return rows[:k]

    def _refresh(self, ctx):
        from urllib.parse import quote

        field = self._pick_field(ctx)
        counts, edges = histogram_data(ctx.view, field) if field else ([], [])
        centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        ctx.panel.data.histogram = [{"type": "bar", "x": centers, "y": counts, "name": field}]
        ctx.panel.state.summary = f"{sum(counts)} samples with a finite {field} in this view" if field else \
            "no float field yet: run 'curate: compute a risk score'"
        top = self.top_images(ctx.view, field, self.TOP) if field else []
        ctx.panel.state.top_ids = [t[0] for t in top]
        for i in range(self.TOP):
            setattr(ctx.panel.state, f"top_{i}",
                    f"/media?filepath={quote(top[i][1], safe='')}" if i < len(top) else None)
        ctx.panel.state.top_caption = "highest: " + ", ".join(f"{t[2]:.3g}" for t in top) if top else ""

    def render(self, ctx):
        panel = types.Object()
        field = ctx.panel.state.score_field
        self._field_dropdown(ctx, panel)
        panel.md(ctx.panel.state.summary or "", name="summary")
        panel.plot("histogram", layout={"title": f"{field} (higher = more likely reproduced)" if field else "",
                                        "xaxis": {"title": field or ""}, "yaxis": {"title": "samples"}})
        ids = ctx.panel.state.top_ids or []
        if ids:
            panel.md(ctx.panel.state.top_caption or "", name="top_caption")
            row = panel.h_stack("top", align_x="left", gap=1)
            for i, sid in enumerate(ids):
                row.img(f"top_{i}", height="72px", width="72px", alt_text=f"{field} rank {i + 1}",
                        on_click=self.open_sample, params={"id": sid})
            panel.btn("show_top", label=f"Show all by {field}, highest first", on_click=self.show_top)
        return types.Property(panel, view=types.GridView(height=100, width=100))


class ScoreVsCopies(_FieldPanel):
    """A score field against a reproduction audit's copies, one point per unique image."""

    FIRST_FIELD_FALLBACK = False  # a float field that is no score would mislead here

    @property
    def config(self):
        return foo.PanelConfig(name="score_vs_copies", label="curate: score vs copies")

    def _refresh(self, ctx):
        from curate.brain.score_trust import audit_keys, score_vs_copies

        keys, field = audit_keys(ctx.dataset), self._pick_field(ctx)
        pts = score_vs_copies(ctx.view, field, keys[0]) if keys and field else {"score": [], "copies": []}
        ctx.panel.data.scatter = [{"type": "scatter", "mode": "markers", "x": pts["score"], "y": pts["copies"],
                                   "name": field}]
        ctx.panel.state.summary = (f"{len(pts['score'])} unique images, audit {keys[0]!r}" if keys else
                                   "no audit yet: run 'curate: audit what the model copies'")

    def render(self, ctx):
        panel = types.Object()
        self._field_dropdown(ctx, panel)
        panel.md(ctx.panel.state.summary or "", name="summary")
        panel.plot("scatter", layout={"xaxis": {"title": ctx.panel.state.score_field or ""},
                                      "yaxis": {"title": "copies among the generated samples"}})
        return types.Property(panel, view=types.GridView(height=100, width=100))


def register(p):
    p.register(ComputeScore)
    p.register(FlagHighRisk)
    p.register(Dedupe)
    p.register(ExportClean)
    p.register(ComputeReproductions)
    p.register(ScoreHistogram)
    p.register(ScoreVsCopies)
