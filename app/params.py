"""A lab's pydantic params JSON schema -> control specs -> Gradio components (no form per lab).

The mapping: integer/number with both bounds (and a modest range) -> slider, otherwise a number box;
an `enum` (inline, via `$ref` to `$defs`, or a `Literal`) -> dropdown; boolean -> checkbox; anything
else -> textbox. Defaults, bounds and descriptions come from the schema. The same specs turn URL query
strings back into typed values, so a shared link and the form agree on types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import gradio as gr

ControlKind = Literal["slider", "number", "dropdown", "checkbox", "textbox"]
ValueType = Literal["integer", "number", "boolean", "string"]

# Integer ranges up to this many values get a slider; wider ones get a number box. Layer, head and patch
# indices are bounded for the largest timm models (0..47), so on the small zoo a slider would mostly
# point at values the model does not have.
MAX_INT_SLIDER_RANGE = 32

# Plain-language labels for the labs' params (a Field's own explicit `title` wins over these). Pydantic
# makes a title from every field name ("Tta Samples"), which is not one.
LABELS = {
    "top_k": "Classes to show per model",
    "tta_samples": "Shifted copies to average (0 = off)",
    "max_shift": "Largest shift (pixels)",
    "seed": "Random seed",
    "layer": "Layer (0 = first)",
    "head": "Attention head",
    "query_row": "Query patch: row (-1 = centre)",
    "query_col": "Query patch: column (-1 = centre)",
    "renormalise": "Rescale rows after dropping the CLS token",
    "probe_size": "Test images to average over",
    "rollout_head_fusion": "How rollout combines the heads",
    "rollout_discard_ratio": "Rollout: share of the weakest links dropped",
    "counterfactual": "What if we force the gates? (which gates)",
    "cf_layer": "What-if: GPSA layer",
    "cf_head": "What-if: head",
    "cf_sigma": "What-if: gate value σ(λ) (0 = content, 1 = positional)",
    "target_class": "Class to explain",
    "ig_steps": "Integration steps (Integrated Gradients)",
    "ig_baseline": "Integrated Gradients starts from",
    "sanity_check": "Also show a copy with random weights (sanity check)",
    "log_x": "Stretch the small fractions (log axis)",
    "show_std": "Show the spread over seeds",
}
# Shown next to the Run button; every other control sits behind "Advanced settings".
BASIC = frozenset({"layer", "head", "target_class", "counterfactual", "cf_sigma"})
# Integer params whose value is a class index (-1 = each model's own prediction): a dropdown of names.
CLASS_PARAMS = frozenset({"target_class"})
OWN_PREDICTION = "each model's own prediction"
# Param -> (architecture key, index into it) whose size bounds it; see `limits_for`.
ARCH_LIMITS = {
    "layer": ("layers", None),
    "head": ("heads", None),
    "cf_layer": ("gpsa_layers", None),
    "cf_head": ("heads", None),
    "query_row": ("patch_grid", 0),
    "query_col": ("patch_grid", 1),
}


@dataclass(frozen=True)
class ControlSpec:
    name: str
    kind: ControlKind
    value_type: ValueType
    label: str
    info: str = ""
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = field(default_factory=tuple)  # values, or (label, value) pairs
    nullable: bool = False

    @property
    def advanced(self) -> bool:
        return self.name not in BASIC

    @property
    def values(self) -> tuple[Any, ...]:
        return tuple(c[1] if isinstance(c, tuple) else c for c in self.choices)


def auto_title(name: str) -> str:
    """Pydantic's default title for a field name ("tta_samples" -> "Tta Samples")."""
    return name.replace("_", " ").title()


def plain_label(name: str, title: str | None) -> str:
    if title and title != auto_title(name):
        return title
    return LABELS.get(name) or name.replace("_", " ").capitalize()


def _resolve(prop: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Follow `$ref`/`allOf` into `$defs` and unwrap Optional (`anyOf` with null); merge outer keys."""
    nullable = False
    prop = dict(prop)
    for _ in range(8):  # bounded: schemas are shallow
        if "$ref" in prop:
            target = defs.get(str(prop.pop("$ref")).rsplit("/", 1)[-1], {})
            prop = {**target, **prop}
        elif "allOf" in prop and len(prop["allOf"]) == 1:
            inner = prop.pop("allOf")[0]
            prop = {**inner, **prop}
        elif "anyOf" in prop:
            options = [o for o in prop["anyOf"] if o.get("type") != "null"]
            nullable = nullable or len(options) < len(prop["anyOf"])
            if len(options) != 1:
                break
            prop.pop("anyOf")
            prop = {**options[0], **prop}
        else:
            break
    return prop, nullable


def _nice_step(span: float) -> float:
    return float(10 ** math.floor(math.log10(span / 100))) if span > 0 else 0.01


def control_spec(name: str, prop: dict[str, Any], defs: dict[str, Any] | None = None) -> ControlSpec:
    prop, nullable = _resolve(prop, defs or {})
    label = plain_label(name, prop.get("title"))
    info = str(prop.get("description") or "")
    default = prop.get("default")
    if "const" in prop:
        choices: tuple[Any, ...] = (prop["const"],)
    else:
        choices = tuple(prop.get("enum") or ())
    if choices:
        return ControlSpec(
            name, "dropdown", "string", label, info, default if default is not None else choices[0],
            choices=choices, nullable=nullable,
        )  # fmt: skip
    kind = prop.get("type")
    if kind == "boolean":
        return ControlSpec(name, "checkbox", "boolean", label, info, bool(default), nullable=nullable)
    if kind in ("integer", "number"):
        lo = prop.get("minimum", prop.get("exclusiveMinimum"))
        hi = prop.get("maximum", prop.get("exclusiveMaximum"))
        step = prop.get("multipleOf")
        is_int = kind == "integer"
        slider = lo is not None and hi is not None and (not is_int or hi - lo <= MAX_INT_SLIDER_RANGE)
        span = (hi - lo) if lo is not None and hi is not None else 0.0
        if step is None:
            step = 1 if is_int else (_nice_step(span) if slider else None)
        if default is None and not nullable:
            default = lo if lo is not None else 0
        return ControlSpec(
            name, "slider" if slider else "number", "integer" if is_int else "number", label, info, default,
            minimum=lo, maximum=hi, step=step, nullable=nullable,
        )  # fmt: skip
    return ControlSpec(
        name, "textbox", "string", label, info, "" if default is None else default, nullable=nullable
    )


def controls_from_schema(schema: dict[str, Any]) -> list[ControlSpec]:
    """All top-level properties of a params schema, in declaration order."""
    defs = schema.get("$defs") or schema.get("definitions") or {}
    return [control_spec(n, p, defs) for n, p in (schema.get("properties") or {}).items()]


def coerce(spec: ControlSpec, raw: Any) -> Any:
    """A component's value or a URL string -> the schema's type. Raises ValueError if it cannot."""
    if raw is None or (isinstance(raw, str) and raw == "" and spec.value_type != "string"):
        if spec.nullable:
            return None
        raise ValueError(f"{spec.label} needs a value")
    if spec.value_type == "boolean":
        if isinstance(raw, str):
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{spec.label}: {raw!r} is not true/false")
        return bool(raw)
    if spec.value_type == "integer":
        number = float(raw)
        if not number.is_integer():
            raise ValueError(f"{spec.label}: {raw!r} is not a whole number")
        return int(number)
    if spec.value_type == "number":
        number = float(raw)
        if not math.isfinite(number):
            raise ValueError(f"{spec.label}: {raw!r} is not a finite number")
        return number
    if spec.kind == "dropdown":
        for choice in spec.values:
            if str(choice) == str(raw):
                return choice
        raise ValueError(f"{spec.label}: {raw!r} is not one of {', '.join(map(str, spec.values))}")
    return str(raw)


def with_class_names(spec: ControlSpec, class_names: list[str]) -> ControlSpec:
    """A class-index param as a dropdown of class names (value = the index; -1 = own prediction)."""
    if spec.name not in CLASS_PARAMS or spec.value_type != "integer" or not class_names:
        return spec
    choices: list[tuple[str, int]] = []
    if spec.minimum is None or spec.minimum <= -1:
        choices.append((OWN_PREDICTION, -1))
    choices += [(name, i) for i, name in enumerate(class_names)]
    default = spec.default if spec.default in [v for _, v in choices] else choices[0][1]
    return ControlSpec(
        spec.name, "dropdown", "integer", spec.label, spec.info, default,
        minimum=spec.minimum, maximum=len(class_names) - 1, choices=tuple(choices), nullable=spec.nullable,
    )  # fmt: skip


def limits_for(spec: ControlSpec, architectures: dict[str, dict[str, Any] | None]) -> tuple[int, str] | None:
    """(largest valid value, which model sets it) for a layer/head/patch param, from the chosen models'
    architectures ({"layers", "heads", "gpsa_layers", "patch_grid"}); None when unknown."""
    if spec.name not in ARCH_LIMITS:
        return None
    key, index = ARCH_LIMITS[spec.name]
    best: tuple[int, str] | None = None
    for model, arch in architectures.items():
        size = (arch or {}).get(key)
        if index is not None and isinstance(size, list | tuple) and len(size) > index:
            size = size[index]
        if not isinstance(size, int) or size <= 0:
            continue
        if best is None or size - 1 < best[0]:
            best = (size - 1, model)  # the smallest model bounds the comparison
    return best


def check_limits(
    specs: list[ControlSpec], params: dict[str, Any], architectures: dict[str, dict[str, Any] | None]
) -> list[str]:
    """One message per value the chosen models cannot take, naming the field (refused, never clamped)."""
    problems = []
    for spec in specs:
        limit = limits_for(spec, architectures)
        value = params.get(spec.name)
        if limit is None or not isinstance(value, int) or value <= limit[0]:
            continue
        problems.append(f"{spec.label}: {value} is out of range; {limit[1]} has 0–{limit[0]}")
    return problems


def in_bounds(spec: ControlSpec, value: Any) -> bool:
    if value is None or spec.value_type not in ("integer", "number"):
        return True
    return (spec.minimum is None or value >= spec.minimum) and (spec.maximum is None or value <= spec.maximum)


def collect_params(specs: list[ControlSpec], values: list[Any]) -> dict[str, Any]:
    """Component values -> the `params` dict of a job (typed; the API validates bounds)."""
    return {spec.name: coerce(spec, value) for spec, value in zip(specs, values, strict=True)}


def params_from_query(specs: list[ControlSpec], query: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Known params found in a URL query -> typed values, plus a note per value that was ignored."""
    values: dict[str, Any] = {}
    notes: list[str] = []
    for spec in specs:
        if spec.name not in query:
            continue
        try:
            value = coerce(spec, query[spec.name])
        except ValueError as exc:
            notes.append(f"ignored {exc}")
            continue
        if not in_bounds(spec, value):
            notes.append(f"ignored {spec.label}={value}: outside {spec.minimum}..{spec.maximum}")
            continue
        values[spec.name] = value
    return values, notes


def make_component(spec: ControlSpec, value: Any, elem_id: str | None = None) -> gr.components.Component:
    """The Gradio control for one spec, showing `value` (already typed)."""
    # interactive=True explicitly: inside gr.render Gradio would otherwise infer some (sliders) as outputs.
    common: dict[str, Any] = {
        "label": spec.label,
        "info": spec.info or None,
        "elem_id": elem_id,
        "interactive": True,
    }
    if spec.kind == "dropdown":
        return gr.Dropdown(choices=list(spec.choices), value=value, **common)  # (label, value) pairs work
    if spec.kind == "checkbox":
        return gr.Checkbox(value=bool(value), **common)
    if spec.kind == "slider":
        assert spec.minimum is not None and spec.maximum is not None
        return gr.Slider(minimum=spec.minimum, maximum=spec.maximum, step=spec.step, value=value, **common)
    if spec.kind == "number":
        precision = 0 if spec.value_type == "integer" else None
        return gr.Number(
            value=value, minimum=spec.minimum, maximum=spec.maximum, precision=precision, **common
        )
    return gr.Textbox(value="" if value is None else str(value), **common)
