"""Form helpers shared by the plugin's operators and panels: the library's defaults, the
given form values, the float-field and model inputs, and one input per score setting."""
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
