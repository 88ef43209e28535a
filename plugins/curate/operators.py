"""The plugin's operators, in the order of a cleaning: dedupe (step 1, needs no score),
compute_score (step 2: any registered score kind; its form is generated from curate.scores;
delegation allowed, progress reported), flag_high_risk (step 3), export_clean (step 4); and
compute_reproductions (the reproduction audit: what the model copies). Each only builds its
form and calls the library; a value the form leaves empty is passed as None so that the
library's own default applies (one set of defaults for the Python API, the CLI and the App).
"""
import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._forms import _choose_field, _default, _given, _model_inputs, _param_input, _resolve_model


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


def _embedding_on(params: dict) -> bool:
    """Whether the dedupe form's embedding switch is on (the API's default when not given)."""
    on = params.get("embedding")
    return bool(_default("dedupe", "embedding") if on is None else on)


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
            inputs.bool("embedding", label="Judge strongly processed copies with the learned copy embedding "
                                           "too (off: the ratio test alone)", default=_default("dedupe", "embedding"))
            if _embedding_on(ctx.params):  # the verifier keeps the embedding's cosine floor
                inputs.bool("verifier", label="Also ask the learned pair verifier (finds more strongly processed "
                                              "copies, with more look-alikes; slower)",
                            default=_default("dedupe", "verifier"))
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
            kw.update(_given(p, "mirror", "brain_key", "embedding"))
            if _embedding_on(p):  # a switch left on from before the embedding was switched off does not count
                kw.update(_given(p, "verifier"))
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
