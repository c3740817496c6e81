"""One generic lab page, built from the lab's `GET /api/labs` entry alone (no form per lab).

Left: the lab's description, a model picker with model cards, the controls generated from its params
schema, Run / Cancel and a live progress bar. Right: the lesson, the figures (`gr.Plot` slots filled from
the job's Plotly JSON), the text, a metrics table and the downloads. Run is a generator: it submits the
job, asks `GET /api/jobs/{id}?wait=` and yields the progress until the job ends; Cancel sends DELETE,
and the waiting request then answers with the job cancelled.
"""

from __future__ import annotations

import html
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from app.client import ApiClient, ApiError, JobView, LabSpec, ModelCard
from app.figures import (
    alt_text,
    figure_title,
    metrics_markdown,
    notice_of,
    ood_html,
    plot_data,
    write_downloads,
)
from app.lesson import Quiz, feedback_html, split_lesson
from app.params import (
    ARCH_LIMITS,
    CLASS_PARAMS,
    ControlSpec,
    check_limits,
    collect_params,
    controls_from_schema,
    limits_for,
    make_component,
    params_from_query,
    with_class_names,
)
from app.state import REPLACE_URL_JS, UrlState, encode_query

log = logging.getLogger("biaslab.ui")

MAX_FIGURES = 12  # gr.Plot slots per lab; further figures are still in the HTML download
# The page asks for a running job's state with `wait=POLL_S`: the API answers the moment the job ends,
# and otherwise after POLL_S, so a long job's progress line moves about three times a second. A queued
# job has no progress to show, so the page asks with QUEUED_WAIT_S and `until=change`, answered the
# moment the job starts: a class queued behind one embedded worker polled that worker's process (and
# its GIL) three times a second per student.
POLL_S = 0.3
QUEUED_WAIT_S = 2.0
DOWNLOAD_DIR = Path(tempfile.gettempdir()) / "biaslab-ui" / "downloads"


# -- pure helpers (unit-tested) -----------------------------------------------------------------------
def model_cap(lab: LabSpec) -> int:
    return max(0, lab.max_models)  # the API's limit, the one the server enforces


def eligible_models(lab: LabSpec, models: list[ModelCard]) -> list[ModelCard]:
    return [m for m in models if lab.accepts(m)]


# Model sets the picker keeps apart (issue 16): one set per run, so a 0.3 M-parameter shapes model is
# never compared with an ImageNet model by accident.
SET_LABELS = {
    "zoo": "Teaching zoo (shapes, 32×32)",
    "imagenet": "ImageNet models (real photos)",
}
SET_NOTES = {
    "zoo": "Small models the project trained on 8 procedural shapes at 32×32: photos are not what they know.",
    "imagenet": "timm's ImageNet-pretrained models (1,000 classes, 224–299 px inputs), for real photos. "
    "Compare them with each other, not with the shapes zoo.",
}


def model_groups(eligible: list[ModelCard]) -> dict[str, list[ModelCard]]:
    """Eligible models by model set, the teaching zoo first."""
    groups: dict[str, list[ModelCard]] = {}
    for m in sorted(eligible, key=lambda m: m.model_set != "zoo"):
        groups.setdefault(m.model_set, []).append(m)
    return groups


def set_choices(models: list[ModelCard]) -> list[tuple[str, str]]:
    """Picker entries of one set; a model this server cannot run says so in its label."""
    return [(m.name if m.available else f"{m.name} (not available here)", m.name) for m in models]


def set_note(model_set: str, models: list[ModelCard]) -> str:
    reasons = sorted({m.unavailable_reason or "unavailable" for m in models if not m.available})
    note = SET_NOTES.get(model_set, "")
    if reasons:
        note += f" Not available on this server: {'; '.join(reasons)}."
    return note


def set_defaults(lab: LabSpec, models: list[ModelCard]) -> list[str]:
    """What the picker ticks when the reader switches to a set: the lab's defaults, else one that runs."""
    names = [m.name for m in models]
    defaults = [n for n in lab.default_models if n in names][: model_cap(lab)]
    return defaults or [m.name for m in models if m.available][:1]


def initial_models(
    lab: LabSpec, eligible: list[ModelCard], requested: tuple[str, ...] | None
) -> tuple[list[str], list[str]]:
    """The models to preselect (from a shared link if valid, else the lab's defaults), plus notes."""
    names = [m.name for m in eligible]
    cap = model_cap(lab)
    notes: list[str] = []
    if requested is not None:
        unknown = [m for m in requested if m not in names]
        if unknown:
            notes.append(f"ignored model(s) this lab cannot use: {', '.join(unknown)}")
        chosen = [m for m in requested if m in names][:cap]
        if chosen:
            return chosen, notes
    defaults = [m for m in lab.default_models if m in names][:cap]
    return (defaults or names[: min(1, cap)]), notes


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def _fmt_pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def _fmt_accuracy(m: ModelCard) -> str:
    """The shipped model's test accuracy and, where more seeds were trained, their mean ± std."""
    spread = m.seed_spread
    if spread is None:
        return _fmt_pct(m.test_accuracy)
    mean, std, n = spread
    return f"{_fmt_pct(m.test_accuracy)} ({n} seeds: {mean:.1%} ± {std:.1%})"


def model_cards_markdown(selected: list[str], models: dict[str, ModelCard]) -> str:
    if not selected:
        return "*No model selected.*"
    lines = ["| model | family | params | test acc. |", "|---|---|---|---|"]
    for name in selected:
        m = models.get(name)
        if m is None:
            continue
        lines.append(f"| **{m.name}** | {m.family} | {_fmt_params(m.params)} | {_fmt_accuracy(m)} |")
    described = [models[n] for n in selected if n in models and models[n].description]
    if described:
        items = "".join(
            f"<li><b>{html.escape(m.name)}</b>: {html.escape(m.description)}"
            + (f" (ECE {m.ece:.3f})" if m.ece is not None else "")
            + "</li>"
            for m in described
        )
        lines += ["", f"<details><summary>About these models</summary><ul>{items}</ul></details>"]
    return "\n".join(lines)


def progress_html(
    status: str, fraction: float = 0.0, message: str | None = None, job: str | None = None
) -> str:
    """An accessible progress bar (a real <progress>) with the job's status and message. A job's last
    line names the job, so that a second run with the same result still replaces (and announces) it."""
    fraction = min(1.0, max(0.0, float(fraction)))
    label = {"queued": "Queued", "started": "Running", "finished": "Done", "cancelled": "Cancelled"}.get(
        status, status.capitalize()
    )
    shown = message if message and message.strip().lower() not in (status, label.lower()) else None
    text = f"{label} · {fraction:.0%}" + (f" · {shown}" if shown else "")
    return (
        f'<div class="bl-progress" data-status="{html.escape(status)}"'
        + (f' data-job="{html.escape(job)}"' if job else "")
        + ' role="status" aria-live="polite">'
        f'<progress value="{fraction:.3f}" max="1" aria-label="job progress"></progress>'
        f"<span>{html.escape(text)}</span></div>"
    )


def error_html(message: str, prefix: str = "Could not run:") -> str:
    return (
        f'<div class="bl-progress bl-error" data-status="error" role="alert">'
        f"<strong>{html.escape(prefix)}</strong> {html.escape(friendly(message))}</div>"
    )


def friendly(message: str) -> str:
    """API messages written for developers, in the words of the page."""
    swaps = {
        "upload it again with POST /api/images": "pick the example or upload the image again",
        "POST /api/images": "the upload button",
    }
    for old, new in swaps.items():
        message = message.replace(old, new)
    return message


def stale_html(what: str) -> str:
    return (
        '<div class="bl-stale" role="status" data-stale="true"><strong>Out of date:</strong> '
        f"the results below are for the previous {html.escape(what)}. Press Run to update them.</div>"
    )


def without_notice(text: str, metrics: dict[str, Any]) -> str:
    """The result text minus the out-of-distribution sentence the worker put first (the page shows it
    in its own box already)."""
    ood = metrics.get("ood")
    sentence = ood.get("sentence") if isinstance(ood, dict) else None
    if isinstance(sentence, str) and text.startswith(sentence):
        return text[len(sentence) :].strip()
    return text


def class_names_for(eligible: list[ModelCard]) -> list[str]:
    """The class list a class dropdown offers: the first eligible model's (the zoo shares one)."""
    return next((list(m.class_names) for m in eligible if m.class_names), [])


def architectures(chosen: list[str], by_name: dict[str, ModelCard]) -> dict[str, dict[str, Any] | None]:
    return {n: by_name[n].arch for n in chosen if n in by_name}


def idle_html(lab: LabSpec) -> str:
    hint = "Pick an image and models, then press Run." if lab.needs_image else "Press Run to draw the chart."
    return f'<div class="bl-progress" data-status="idle" role="status">{html.escape(hint)}</div>'


# -- the page -----------------------------------------------------------------------------------------
@dataclass
class LabPage:
    lab: LabSpec
    specs: list[ControlSpec]
    eligible: list[ModelCard]
    tab: gr.Tab
    models: gr.CheckboxGroup | None
    cards: gr.Markdown | None
    controls: list[Any]  # Gradio components, one per ControlSpec
    status: gr.HTML
    run: gr.Button
    cancel: gr.Button
    plots: list[gr.Plot]
    quiz: Quiz | None = None
    set_radio: gr.Radio | None = None  # the model-set switch, when more than one set is eligible
    set_info: gr.Markdown | None = None
    groups: dict[str, list[ModelCard]] = field(default_factory=dict)

    def url_updates(self, url: UrlState, by_name: dict[str, ModelCard]) -> dict[Any, Any]:
        """Updates that put this page in the state a shared link describes (only for its own lab)."""
        if url.lab != self.lab.name:
            return {}
        updates: dict[Any, Any] = {}
        chosen, notes = initial_models(self.lab, self.eligible, url.models)
        if self.models is not None and url.models is not None and self.set_radio is not None and chosen:
            model_set = by_name[chosen[0]].model_set  # the link's set: its models, never two sets at once
            members = self.groups.get(model_set, [])
            chosen = [n for n in chosen if by_name[n].model_set == model_set]
            updates[self.set_radio] = gr.update(value=model_set)
            updates[self.models] = gr.update(choices=set_choices(members), value=chosen)
            if self.set_info is not None:
                updates[self.set_info] = set_note(model_set, members)
        elif self.models is not None and url.models is not None:
            updates[self.models] = gr.update(value=chosen)
        if self.models is not None and url.models is not None and self.cards is not None:
            updates[self.cards] = model_cards_markdown(chosen, by_name)
        values, param_notes = params_from_query(self.specs, url.params)
        for spec, control in zip(self.specs, self.controls, strict=True):
            if spec.name in values:
                updates[control] = gr.update(value=values[spec.name])
        notes += param_notes
        if notes:
            updates[self.status] = error_html("; ".join(notes), "Shared link:")
        return updates


def build_lab_page(
    lab: LabSpec,
    models: list[ModelCard],
    client: ApiClient,
    image_id: gr.State,
    url_box: gr.Textbox,
    url: UrlState | None = None,
) -> LabPage:
    """Build one tab inside the current `gr.Tabs` and wire its events."""
    by_name = {m.name: m for m in models}
    eligible = eligible_models(lab, models)
    groups = model_groups(eligible)
    lesson_text, quiz = split_lesson(lab.lesson)
    cap = model_cap(lab)
    from_url = url is not None and url.lab == lab.name
    chosen, notes = initial_models(lab, eligible, url.models if url and from_url else None)
    # One model set at a time: the first chosen model's (a link may name another set's models: dropped).
    current_set = by_name[chosen[0]].model_set if chosen else next(iter(groups), "zoo")
    if any(by_name[n].model_set != current_set for n in chosen):
        notes.append("models of different sets are never compared; kept those of the first")
        chosen = [n for n in chosen if by_name[n].model_set == current_set]
    schema_specs = controls_from_schema(lab.params_schema)
    # Class dropdowns list the current set's classes (shapes or ImageNet's 1,000).
    specs_by_set = {
        k: [with_class_names(s, class_names_for(v)) for s in schema_specs] for k, v in groups.items()
    }
    specs = specs_by_set.get(current_set) or [
        with_class_names(s, class_names_for(eligible)) for s in schema_specs
    ]
    values = {s.name: s.default for s in specs}
    if url is not None and from_url:
        linked, param_notes = params_from_query(specs, url.params)
        values.update(linked)
        notes += param_notes

    with gr.Tab(lab.title, id=lab.name, elem_id=f"tab-{lab.name}") as tab, gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=300, elem_classes=["bl-controls"]):
            picker: gr.CheckboxGroup | None = None
            set_radio: gr.Radio | None = None
            set_info: gr.Markdown | None = None
            cards = None
            if cap > 0 and len(groups) > 1:
                set_radio = gr.Radio(
                    choices=[(SET_LABELS.get(k, k), k) for k in groups],
                    value=current_set,
                    label="Model set",
                    interactive=True,
                    elem_id=f"{lab.name}-model-set",
                )
                set_info = gr.Markdown(
                    set_note(current_set, groups[current_set]), elem_id=f"{lab.name}-set-note"
                )
            if cap > 0:
                picker = gr.CheckboxGroup(
                    choices=set_choices(groups.get(current_set, eligible)),
                    value=chosen,
                    label=f"Models to compare (pick 1 to {cap})",
                    interactive=True,
                    elem_id=f"{lab.name}-models",
                )
            question: gr.Textbox | None = None
            if lab.text_input is not None:
                spec_t = lab.text_input
                question = gr.Textbox(
                    value=spec_t.suggestions[0] if spec_t.suggestions else "",
                    label=spec_t.label,
                    placeholder=spec_t.placeholder,
                    max_length=spec_t.max_chars,
                    lines=1,
                    elem_id=f"{lab.name}-question",
                )
                if len(spec_t.suggestions) > 1:
                    gr.Examples([[q] for q in spec_t.suggestions], inputs=[question], label="Suggestions")
            with gr.Row(elem_classes=["bl-run-row"]):
                run = gr.Button("Run", variant="primary", elem_id=f"{lab.name}-run", scale=2)
                cancel = gr.Button(
                    "Cancel", variant="secondary", interactive=False, elem_id=f"{lab.name}-cancel", scale=1
                )
            first = error_html("; ".join(notes), "Shared link:") if notes else idle_html(lab)
            status = gr.HTML(first, elem_id=f"{lab.name}-status")
            controls: list[Any] = [None] * len(specs)
            for i, spec in enumerate(specs):  # the few settings a lesson talks about stay in view
                if not spec.advanced:
                    controls[i] = make_component(spec, values[spec.name], elem_id=f"{lab.name}-{spec.name}")
            if any(s.advanced for s in specs):
                with gr.Accordion("Advanced settings", open=False, elem_id=f"{lab.name}-advanced"):
                    for i, spec in enumerate(specs):
                        if spec.advanced:
                            controls[i] = make_component(
                                spec, values[spec.name], elem_id=f"{lab.name}-{spec.name}"
                            )
            if cap > 0:
                with gr.Accordion("About these models", open=False, elem_id=f"{lab.name}-about"):
                    cards = gr.Markdown(model_cards_markdown(chosen, by_name), elem_classes=["bl-cards"])
        with gr.Column(scale=5, min_width=300, elem_classes=["bl-results"]):
            gr.Markdown(lab.description, elem_classes=["bl-lab-intro"])
            stale = gr.HTML("", elem_id=f"{lab.name}-stale", visible=False)
            answer: gr.Radio | None = None
            if quiz is not None:
                answer = gr.Radio(
                    choices=list(quiz.options),
                    value=None,
                    label=f"Before you run: {quiz.question}",
                    info="Your answer is locked in when you press Run; the page compares it with the result.",
                    interactive=True,
                    elem_id=f"{lab.name}-quiz",
                    elem_classes=["bl-quiz"],
                )
            reveal = gr.HTML("", elem_id=f"{lab.name}-reveal", visible=False)
            ood = gr.HTML("", elem_id=f"{lab.name}-ood", visible=False)
            text = gr.Markdown(elem_id=f"{lab.name}-text", elem_classes=["bl-text"], visible=False)
            plots: list[gr.Plot] = []
            notices: list[gr.Markdown] = []
            titles: list[gr.HTML] = []  # above each chart, in HTML so the browser wraps it
            for i in range(MAX_FIGURES):
                titles.append(
                    gr.HTML("", visible=False, elem_id=f"{lab.name}-title-{i}", elem_classes=["bl-fig-title"])
                )
                plots.append(
                    gr.Plot(
                        visible=False,
                        show_label=False,
                        elem_id=f"{lab.name}-fig-{i}",
                        elem_classes=["bl-plot"],
                    )
                )
                notices.append(
                    gr.Markdown(visible=False, elem_id=f"{lab.name}-notice-{i}", elem_classes=["bl-notice"])
                )
            more = gr.Markdown(visible=False)
            numbers = gr.Accordion("The numbers behind the figures", open=False, visible=False)
            with numbers:
                metrics = gr.Markdown(elem_id=f"{lab.name}-metrics", elem_classes=["bl-metrics"])
            with gr.Row():
                dl_html = gr.DownloadButton(
                    "Download figures (HTML)", visible=False, elem_id=f"{lab.name}-dl-html", size="md"
                )
                dl_json = gr.DownloadButton(
                    "Download numbers (JSON)", visible=False, elem_id=f"{lab.name}-dl-json", size="md"
                )
            lesson = gr.Accordion(
                "Lesson: what to look for", open=True, visible=bool(lesson_text), elem_id=f"{lab.name}-lesson"
            )
            with lesson:
                gr.Markdown(lesson_text or "", elem_classes=["bl-lesson"])
        job_id = gr.State(None)  # inside the tab: a non-Tab child of gr.Tabs confuses the tab strip
        # How many figure slots show a result (0: none), so a change can mark them stale and the next
        # result hides only the slots that were showing: each updated component costs the page server
        # a rebuild of its config, and a lab has MAX_FIGURES × 3 of them.
        shown = gr.State(0)
    picker_inputs = [picker] if picker is not None else []
    text_inputs: list[Any] = [question] if question is not None else []

    def selected_models(args: tuple[Any, ...]) -> tuple[list[str], tuple[Any, ...]]:
        if picker is None:
            return [], args
        return list(args[0] or []), args[1:]

    # -- URL state ----------------------------------------------------------------------------------
    def query_for(current_image: str | None, *args: Any) -> str:
        chosen_now, vals = selected_models(args)
        params: dict[str, Any] = {}
        for spec, raw in zip(specs, vals, strict=True):
            try:
                params[spec.name] = _param_value(spec, raw)
            except ValueError:
                continue
        return encode_query(lab.name, chosen_now if picker is not None else None, current_image, params)

    url_triggers = [tab.select] + [c.change for c in controls]
    if picker is not None:
        url_triggers.append(picker.change)
    gr.on(
        url_triggers,
        query_for,
        [image_id, *picker_inputs, *controls],
        url_box,
        show_progress="hidden",
        queue=False,
    ).then(None, [url_box], None, js=REPLACE_URL_JS, queue=False)

    # -- stale results: any change of image, models or settings after a run marks them --------------
    def mark_stale(what: str) -> Any:
        def handler(has_result: int) -> Any:
            return gr.update(value=stale_html(what), visible=True) if has_result else gr.skip()

        return handler

    if lab.needs_image or cap > 0:
        image_id.change(mark_stale("image"), shown, stale, show_progress="hidden", queue=False)
    setting_events = [c.input for c in controls] + ([picker.input] if picker is not None else [])
    setting_events += [q.input for q in text_inputs]
    if setting_events:
        gr.on(setting_events, mark_stale("settings"), shown, stale, show_progress="hidden", queue=False)

    arch_specs = [(i, s) for i, s in enumerate(specs) if s.name in ARCH_LIMITS]

    if picker is not None and cards is not None:

        def on_models(selected: list[str] | None) -> Any:
            selected = list(selected or [])
            out: list[Any] = []
            if len(selected) > cap:
                gr.Warning(f"{lab.title} compares at most {cap} models; untick one first.")
                selected = selected[:cap]
                out += [selected, model_cards_markdown(selected, by_name)]
            else:
                out += [gr.skip(), model_cards_markdown(selected, by_name)]
            # Layer/head fields: the largest value every chosen model has (when the API reports it).
            archs = architectures(selected, by_name)
            for _, spec in arch_specs:
                limit = limits_for(spec, archs)
                out.append(gr.update(maximum=limit[0]) if limit else gr.skip())
            return out

        arch_controls = [controls[i] for i, _ in arch_specs]
        picker.input(on_models, picker, [picker, cards, *arch_controls], show_progress="hidden", queue=False)

    # -- model set: switching it swaps the picker's models and the class dropdowns' classes -----------
    class_controls = [
        (i, c) for i, (c, s) in enumerate(zip(controls, specs, strict=True)) if s.name in CLASS_PARAMS
    ]
    if set_radio is not None and picker is not None and set_info is not None and cards is not None:

        def on_set(model_set: str) -> list[Any]:
            members = groups.get(model_set, [])
            ticked = set_defaults(lab, members)
            out: list[Any] = [
                gr.update(choices=set_choices(members), value=ticked),
                set_note(model_set, members),
                model_cards_markdown(ticked, by_name),
            ]
            for i, _ in class_controls:
                spec = specs_by_set.get(model_set, specs)[i]
                out.append(gr.update(choices=list(spec.choices), value=spec.default))
            return out

        set_radio.input(
            on_set,
            set_radio,
            [picker, set_info, cards, *[c for _, c in class_controls]],
            show_progress="hidden",
            queue=False,
        )
    set_inputs: list[Any] = [set_radio] if set_radio is not None else []

    # -- run / cancel ---------------------------------------------------------------------------------
    figure_outputs: list[Any] = [*titles, *plots, *notices, more]
    quiz_outputs: list[Any] = [answer, reveal] if answer is not None else []
    outputs = [
        job_id, shown, status, run, cancel, stale, ood, text, metrics, numbers, dl_html, dl_json, lesson,
        *quiz_outputs, *figure_outputs,
    ]  # fmt: skip
    quiz_inputs: list[Any] = [answer] if answer is not None else []

    def fail(message: str) -> dict[Any, Any]:
        out: dict[Any, Any] = {
            status: error_html(message),
            run: gr.update(interactive=True),
            cancel: gr.update(interactive=False),
        }
        if answer is not None:
            out[answer] = gr.update(interactive=True)
        return out

    def run_job(
        request: gr.Request, current_image: str | None, showing: int, *args: Any
    ) -> Iterator[dict[Any, Any]]:
        active = specs
        if set_radio is not None:  # the chosen set's class dropdowns
            active, args = specs_by_set.get(args[0], specs), args[1:]
        prediction: str | None = None
        if answer is not None:
            prediction, args = args[0], args[1:]
        asked: str | None = None
        if question is not None:
            asked, args = (args[0] or "").strip(), args[1:]
            if lab.text_input is not None and lab.text_input.required and not asked:
                yield fail(f"type a {lab.text_input.label.lower()} first")
                return
        chosen_now, vals = selected_models(args)
        try:
            params = {s.name: _param_value(s, v) for s, v in zip(active, vals, strict=True)}
        except ValueError as exc:
            yield fail(str(exc))
            return
        if picker is not None and not 1 <= len(chosen_now) <= cap:
            yield fail(f"choose between 1 and {cap} models")
            return
        problems = check_limits(active, params, architectures(chosen_now, by_name))
        if problems:
            yield fail("; ".join(problems))
            return
        if lab.needs_image and not current_image:
            yield fail("this lab needs an image: pick an example above or upload one")
            return
        image = current_image if (lab.needs_image or cap > 0) else None
        job: str | None = None
        view: JobView | None = None
        try:
            job = client.submit_job(
                lab.name, chosen_now, image, params, text=asked, client_ip=forwarded_chain(request)
            )
            # A short job's result is the page's first update. Every update costs the page server a
            # rebuild of each output the event names, updated or not (about 35 ms of CPU for a lab's
            # 50), so progress is shown only once the job has taken POLL_S.
            view = client.job(job, wait=POLL_S)
            shown_progress: str | None = None
            drawn_step = 0
            while not view.done:
                update: dict[Any, Any] = {}
                if shown_progress is None:  # a longer job: it can be cancelled, and Run waits for it
                    update = {job_id: job, run: gr.update(interactive=False)}
                    update[cancel] = gr.update(interactive=True)
                    if answer is not None:
                        update[answer] = gr.update(interactive=False)  # locked in before the result
                progress = progress_html(view.status, view.progress, view.message)
                if progress != shown_progress:  # an unchanged update still costs a round trip
                    update[status] = shown_progress = progress
                if view.partial is not None and view.partial.step != drawn_step:
                    # A partial result (a denoising step, a decoded token): show it as it arrives.
                    drawn_step = view.partial.step
                    update.update(_figure_updates(view.partial.figures, view.id, showing))
                    showing = max(showing, len(view.partial.figures))
                    partial_text = f"*Partial result {drawn_step}:* {view.partial.text or ''}"
                    update[text] = gr.update(value=partial_text, visible=True)
                if update:
                    yield update
                if view.status == "queued":
                    view = client.job(job, wait=QUEUED_WAIT_S, until="change")
                else:
                    view = client.job(job, wait=POLL_S)
        except ApiError as exc:
            yield {job_id: None, **fail(str(exc))}
            return
        finally:
            if job is not None and (view is None or not view.done):
                _cancel_quietly(client, job)  # the page went away (or polling failed): free the worker
        done: dict[Any, Any] = {
            job_id: None,
            shown: showing,
            run: gr.update(interactive=True),
            cancel: gr.update(interactive=False),
        }
        if answer is not None:
            done[answer] = gr.update(interactive=True)
        if view.status == "cancelled":
            yield {**done, status: progress_html("cancelled", view.progress, "stopped by you", job=view.id)}
        elif view.status == "failed" or view.result is None:
            yield {**done, status: error_html(view.error or "the job failed without a message")}
        else:
            # The figures first; the downloads (a page with plotly.js inlined) once they are written, and
            # Run comes back with them, in the handler's last update.
            controls_back = {c: done.pop(c) for c in (run, cancel, answer) if c in done}
            yield {**done, **_result_updates(view, chosen_now, prediction, showing)}
            yield {**controls_back, **_download_updates(view, chosen_now, image, params)}

    def _figure_updates(figures: list[dict[str, Any]], job: str, showing: int) -> dict[Any, Any]:
        """Updates that draw `figures` into the first slots and hide the `showing` slots they don't use."""
        updates: dict[Any, Any] = {}
        for i, plot in enumerate(plots[: max(len(figures), showing)]):
            if i < len(figures):
                figure = figures[i]
                try:
                    updates[plot] = gr.update(
                        value=plot_data(figure), label=alt_text(figure, i), visible=True
                    )
                except (
                    ValueError,
                    TypeError,
                    AttributeError,
                ) as exc:  # a malformed figure must not hide the others
                    log.warning("figure %d of job %s unreadable: %s", i, job, exc)
                    updates[plot] = gr.update(
                        value=None, label=f"Figure {i + 1} could not be drawn", visible=True
                    )
                heading = figure_title(figure)
                updates[titles[i]] = gr.update(
                    value=f'<p class="bl-fig-title">{html.escape(heading)}</p>' if heading else "",
                    visible=bool(heading),
                )
                note = notice_of(figure)
                updates[notices[i]] = gr.update(
                    value=f"**What to notice:** {note}" if note else "", visible=bool(note)
                )
            else:
                updates[plot] = gr.update(value=None, visible=False)
                updates[titles[i]] = gr.update(value="", visible=False)
                updates[notices[i]] = gr.update(value="", visible=False)
        extra = len(figures) - len(plots)
        if extra > 0 or showing > len(plots):
            updates[more] = gr.update(
                value=f"*{extra} more figure(s) are in the HTML download.*", visible=extra > 0
            )
        return updates

    def _result_updates(
        view: JobView, chosen_now: list[str], prediction: str | None, showing: int
    ) -> dict[Any, Any]:
        assert view.result is not None
        result = view.result
        updates: dict[Any, Any] = {
            status: progress_html("finished", 1.0, view.message, job=view.id),
            shown: max(1, len(result.figures)),
            stale: "",
        }
        if lesson_text and not showing:  # make room for the first figures; the lesson stays one click away
            updates[lesson] = gr.Accordion(open=False)
        if quiz is not None:
            updates[reveal] = gr.update(value=feedback_html(quiz, prediction), visible=True)
        updates.update(_figure_updates(result.figures, view.id, showing))
        notice = ood_html(result.metrics)
        updates[ood] = gr.update(value=notice, visible=bool(notice))
        shown_text = without_notice(result.text or "", result.metrics) if notice else (result.text or "")
        updates[text] = gr.update(value=shown_text, visible=bool(shown_text))
        table = metrics_markdown(result.metrics)
        updates[metrics] = table
        updates[numbers] = gr.update(visible=bool(table))
        return updates

    def _download_updates(
        view: JobView, chosen_now: list[str], image: str | None, params: dict[str, Any]
    ) -> dict[Any, Any]:
        assert view.result is not None
        result = view.result
        updates: dict[Any, Any] = {}
        subtitle = (
            f"models: {', '.join(chosen_now) or '–'} · image: {image or '–'} · params: {json.dumps(params)}"
        )
        try:
            html_path, json_path = write_downloads(
                DOWNLOAD_DIR / view.id,
                f"{lab.name}-{view.id[:8]}",
                result.figures,
                {"lab": lab.name, "job": view.id, "models": chosen_now, "image_id": image, "params": params,
                 "text": result.text, "metrics": result.metrics},
                title=f"Inductive Bias Lab: {lab.title}",
                subtitle=subtitle,
                text=result.text,
            )  # fmt: skip
        except OSError as exc:
            log.warning("could not write downloads for %s: %s", view.id, exc)
            updates[dl_html] = updates[dl_json] = gr.update(visible=False)
        else:
            updates[dl_html] = gr.update(value=str(html_path), visible=True)
            updates[dl_json] = gr.update(value=str(json_path), visible=True)
        return updates

    run.click(
        run_job,
        [image_id, shown, *set_inputs, *quiz_inputs, *text_inputs, *picker_inputs, *controls],
        outputs,
        show_progress="hidden",
        concurrency_limit=None,  # the handler mostly waits on the backend's queue
        trigger_mode="once",
    )

    def cancel_job(job: str | None) -> Any:
        if not job:
            return gr.skip()
        try:
            client.cancel_job(job)
        except ApiError as exc:
            return error_html(f"could not cancel: {exc}")
        return progress_html("started", 0, "cancelling…")

    cancel.click(cancel_job, job_id, status, show_progress="hidden", concurrency_limit=None)
    return LabPage(
        lab, specs, eligible, tab, picker, cards, controls, status, run, cancel, plots, quiz,
        set_radio, set_info, groups,
    )  # fmt: skip


def _param_value(spec: ControlSpec, raw: Any) -> Any:
    return collect_params([spec], [raw])[spec.name]


def forwarded_chain(request: gr.Request | None) -> str | None:
    """The X-Forwarded-For chain to send with a job: what reached the UI, plus the browser's address as
    the UI saw it. The API charges its rate limit to the nearest hop it does not trust, so each student
    has their own limit instead of the whole class sharing the UI server's."""
    if request is None:
        return None
    hops = [h.strip() for h in (request.headers.get("x-forwarded-for") or "").split(",") if h.strip()]
    peer = request.client.host if request.client is not None else None
    return ", ".join([*hops, peer] if peer else hops) or None


def _cancel_quietly(client: ApiClient, job: str) -> None:
    try:
        client.cancel_job(job)
    except ApiError as exc:
        log.info("could not cancel job %s: %s", job, exc)
