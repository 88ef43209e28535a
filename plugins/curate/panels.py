"""The plugin's panels: score_histogram (any float field of the view and its top images)
and score_vs_copies (a score against a reproduction audit's copies)."""
import numpy as np

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ._forms import _default_field, _float_fields


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
