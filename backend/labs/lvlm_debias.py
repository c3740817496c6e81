"""LVLM debiasing: post-hoc calibration and visual debias decoding side by side (METHODS §7).

Zhang et al., Debiasing Multimodal Large Language Models, arXiv 2403.05262 (official code
`yfzhang114/LLaVA-Align`). A vision-language model answers partly from its language prior; both rules
compare what it says with the image against what it says with a content-free input (no image, a blank
image, a noise image):

- post-hoc debias: q ∝ diag(p_cf)⁻¹ p over the answer's label space (contextual calibration);
- visual debias decoding (VDD): at every token keep the plausible tokens (p ≥ β · max p) and score them
  (1 + α) ℓ − α ℓ̃, decoded side by side with plain decoding, token by token as partial results.

The blank-image probe asks the same question about a grey image with nothing in it; the metrics are the
balanced clevr-lite split's accuracy, yes-ratio and hallucination rates for the three answer rules.
Formulas: `backend/labs/vlm_debias_math.py`; decoding and metrics: `backend/labs/vlm_eval.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go
import torch
from pydantic import Field

from backend import plots
from backend.data.clevr_lite import COLORS, COUNTS, TEMPLATES, caption, load_clevr_lite
from backend.data.splits import to_tensor
from backend.labs.base import Lab, LabContext, LabParams, LabResult, register_lab
from backend.labs.vlm_debias_math import choose, softmax, vdd_scores
from backend.labs.vlm_eval import (
    MAX_ANSWER,
    Scorer,
    content_free_images,
    evaluate_balanced,
    posthoc,
    prompt,
)
from backend.models.preprocess import preprocess
from backend.models.vlm import EOS, VOCAB, unknown_words, words
from backend.schemas import TextInputSpec

TOP_TOKENS = 8  # tokens shown per decoding step and in free-text label spaces


class LvlmDebiasParams(LabParams):
    content_free: Literal["none", "blank", "noise"] = Field(
        default="none",
        description="The content-free input both rules compare with: the image removed (the model's "
        "learned no-image token), a blank grey image, or a Gaussian-noise image",
    )
    alpha: float = Field(default=1.0, ge=0.0, le=5.0, description="VDD contrast α: (1+α)ℓ − αℓ̃")
    beta: float = Field(
        default=0.1, ge=0.0, le=1.0, description="VDD plausibility cutoff β: keep tokens with p ≥ β · max p"
    )
    temperature: float = Field(
        default=0.0, ge=0.0, le=2.0, description="Decoding temperature; 0 = greedy, above 0 samples (seeded)"
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Sampling seed (temperature > 0)")
    scene: Literal["auto", "generated"] = Field(
        default="auto",
        description="auto: the chosen image if there is one, else a generated balanced scene; generated: "
        "always a generated scene (its true caption is shown)",
    )
    scene_seed: int = Field(
        default=3,
        ge=0,
        le=100_000,
        description="Which generated balanced-split scene, when no image is given",
    )
    eval_scenes: int = Field(
        default=120, ge=0, le=1200, description="Balanced-split scenes for the metrics (0 skips them)"
    )


def label_space(question: str) -> tuple[str, ...] | None:
    """The answer words a templated question allows; None for free answers (captions)."""
    w = words(question)
    if w[:2] == ["is", "there"]:
        return ("yes", "no")
    if w[:2] == ["what", "color"]:
        return COLORS
    if w[:2] == ["how", "many"]:
        return COUNTS
    return None


def _word(i: int) -> str:
    return VOCAB[i]


@register_lab
class LvlmDebiasLab(Lab):
    name = "lvlm-debias"
    title = "Vision-language debiasing"
    description = (
        "When a vision-language model answers from its language prior instead of the image: post-hoc "
        "calibration against a content-free input, and visual debias decoding (Zhang et al. 2024), "
        "token by token."
    )
    Params = LvlmDebiasParams
    model_tasks = ("vqa",)
    model_families = ("vlm",)
    needs_image = False  # an uploaded scene is optional; without one a balanced scene is generated
    text_input = TextInputSpec(
        label="Question",
        placeholder="is there a red ball?",
        suggestions=list(TEMPLATES),
        max_chars=80,
    )
    max_models = 1
    default_models = ("vlm-clevr",)

    def run(self, ctx: LabContext, params: LvlmDebiasParams) -> LabResult:  # type: ignore[override]
        model = ctx.models[0]
        scorer = Scorer(model.module, ctx.device)
        question = (ctx.text or "").strip()
        image, truth = self._scene(ctx, params)
        cf = content_free_images(params.content_free, 1, params.seed)
        labels = label_space(question)
        seq = prompt(question)
        lg = scorer.next_logits(image, [seq])[0]
        lcf = scorer.next_logits(cf, [seq])[0]
        space = labels or tuple(_word(i) for i in np.argsort(-lg)[:TOP_TOKENS])
        p, p_cf, q = posthoc(lg, lcf, space)
        arrays: dict[str, Any] = {
            "image": image[0].permute(1, 2, 0).numpy(),
            "truth": truth,
            "question": question,
            "labels": list(space),
            "p": p,
            "p_cf": p_cf,
            "q": q,
            "plain": [],
            "vdd": [],
        }
        metrics: dict[str, Any] = {
            "question": question,
            "unknown_words": unknown_words(question),
            "label_space": list(space) if labels else None,
            "posthoc": {
                "plain_answer": space[int(np.argmax(p))],
                "debiased_answer": space[int(np.argmax(q))],
                "p": dict(zip(space, p.tolist(), strict=True)),
                "p_cf": dict(zip(space, p_cf.tolist(), strict=True)),
                "q": dict(zip(space, q.tolist(), strict=True)),
            },
        }
        ctx.progress(0.05, "post-hoc calibration")
        ctx.publish(LabResult(dict(arrays), dict(metrics), "Post-hoc calibration done; decoding…"))
        self._decode(ctx, scorer, image, cf, seq, params, arrays, metrics)
        metrics["blank_probe"] = arrays["probe"] = self._blank_probe(scorer, seq, space, params)
        if params.eval_scenes > 0:
            metrics["balanced"] = evaluate_balanced(
                scorer,
                params.eval_scenes,
                cf=params.content_free,
                alpha=params.alpha,
                beta=params.beta,
                progress=lambda f, m: ctx.progress(0.4 + 0.6 * f, f"balanced split: {m}"),
            )
        return LabResult(arrays, metrics, self._sentence(metrics, params))

    @staticmethod
    def _scene(ctx: LabContext, params: LvlmDebiasParams) -> tuple[torch.Tensor, str | None]:
        """(1, 3, 32, 32) in [0, 1] and the true caption when the scene is generated."""
        if ctx.image is not None and params.scene == "auto":
            return preprocess(ctx.image, ctx.models[0].module), None
        split = load_clevr_lite("test", 1, params.scene_seed)
        return to_tensor(split.images), caption(split.meta["objects"][0])

    def _decode(
        self,
        ctx: LabContext,
        scorer: Scorer,
        image: torch.Tensor,
        cf: torch.Tensor | None,
        seq: list[int],
        params: LvlmDebiasParams,
        arrays: dict[str, Any],
        metrics: dict[str, Any],
    ) -> None:
        """Plain and debiased decoding in lockstep, one partial result per token."""
        rng_plain, rng_vdd = np.random.default_rng(params.seed), np.random.default_rng(params.seed)
        plain: list[int] = []
        vdd: list[int] = []
        done_plain = done_vdd = False
        for step in range(MAX_ANSWER):
            if not done_plain:
                lg = scorer.next_logits(image, [seq + plain])[0]
                tok = choose(lg, params.temperature, rng_plain)
                probs = softmax(lg)
                arrays["plain"].append({"token": _word(tok), "p": float(probs[tok])})
                done_plain = tok == EOS
                if not done_plain:
                    plain.append(tok)
            if not done_vdd:
                lg = scorer.next_logits(image, [seq + vdd])[0]
                lcf = scorer.next_logits(cf, [seq + vdd])[0]
                s = vdd_scores(lg, lcf, params.alpha, params.beta)
                tok = choose(s.scores, params.temperature, rng_vdd)
                arrays["vdd"].append(self._vdd_step(lg, lcf, s.scores, s.kept, tok))
                done_vdd = tok == EOS
                if not done_vdd:
                    vdd.append(tok)
            metrics["plain_answer"] = " ".join(_word(t) for t in plain)
            metrics["debiased_answer"] = " ".join(_word(t) for t in vdd)
            ctx.progress(0.05 + 0.3 * (step + 1) / MAX_ANSWER, f"token {step + 1}")
            ctx.publish(
                LabResult(
                    {k: v for k, v in arrays.items()},
                    dict(metrics),
                    f"plain: {metrics['plain_answer']} | debiased: {metrics['debiased_answer']}",
                )
            )
            if done_plain and done_vdd:
                break
        metrics["changed_steps"] = sum(step["changed"] for step in arrays["vdd"])

    @staticmethod
    def _vdd_step(
        lg: np.ndarray, lcf: np.ndarray, scores: np.ndarray, kept: np.ndarray, tok: int
    ) -> dict[str, Any]:
        """What the cutoff kept and how the contrast moved the choice at one step."""
        p, p_cf = softmax(lg), softmax(lcf)
        would = int(np.argmax(np.where(kept, lg, -np.inf)))  # plain's pick from this same prefix
        top = [int(i) for i in np.argsort(-p)[:TOP_TOKENS]]
        return {
            "token": _word(tok),
            "plain_pick": _word(would),
            "changed": would != tok,
            "kept": [_word(int(i)) for i in np.flatnonzero(kept)],
            "top": [_word(i) for i in top],
            "p": [float(p[i]) for i in top],
            "p_cf": [float(p_cf[i]) for i in top],
            "vdd": [float(v) for v in softmax(np.where(kept, scores, -np.inf))[top]],
        }

    @staticmethod
    def _blank_probe(
        scorer: Scorer, seq: list[int], space: tuple[str, ...], params: LvlmDebiasParams
    ) -> dict[str, Any]:
        """The question about a blank grey image: the plain answer and its confidence, and the debiased
        ones (post-hoc and VDD against the image removed: the blank image's own evidence)."""
        blank = content_free_images("blank", 1)
        lg = scorer.next_logits(blank, [seq])[0]
        lnone = scorer.next_logits(None, [seq])[0]
        p, _, q = posthoc(lg, lnone, space)
        s = vdd_scores(lg, lnone, params.alpha, params.beta)
        vdd_first = softmax(s.scores)
        return {
            "labels": list(space),
            "p": p.tolist(),
            "q": q.tolist(),
            "plain_answer": space[int(np.argmax(p))],
            "plain_confidence": float(p.max()),
            "posthoc_answer": space[int(np.argmax(q))],
            "posthoc_confidence": float(q.max()),
            "vdd_first_token": _word(int(np.argmax(s.scores))),
            "vdd_first_token_p": float(vdd_first.max()),
        }

    @staticmethod
    def _sentence(metrics: dict[str, Any], params: LvlmDebiasParams) -> str:
        ph, probe = metrics["posthoc"], metrics["blank_probe"]
        parts = [
            f"Plain decoding: “{metrics['plain_answer']}”; debiased (α={params.alpha:g}, β={params.beta:g}, "
            f"against {params.content_free}): “{metrics['debiased_answer']}”, the contrast changed "
            f"{metrics['changed_steps']} token(s).",
            f"Post-hoc: {ph['plain_answer']} → {ph['debiased_answer']}.",
            f"About a blank image the model says “{probe['plain_answer']}” at "
            f"{probe['plain_confidence']:.0%}; "
            f"calibrated, “{probe['posthoc_answer']}” at {probe['posthoc_confidence']:.0%}.",
        ]
        if metrics["unknown_words"]:
            parts.append(
                f"Words the model does not know (read as <unk>): {', '.join(metrics['unknown_words'])}."
            )
        bal = metrics.get("balanced")
        if bal:
            parts.append(
                "Balanced split (yes-ratio of the truth 50%): "
                + "; ".join(
                    f"{r} accuracy {bal[k]['accuracy']:.0%}, yes-ratio {bal[k]['yes_ratio']:.0%}, "
                    f"hallucination {bal[k]['hallucination_rate']:.0%}"
                    for r, k in (("plain", "plain"), ("post-hoc", "posthoc"), ("VDD", "vdd"))
                )
                + f"; without the image it says yes {bal['yes_ratio_without_image']:.0%} of the time."
            )
        return " ".join(parts)

    def figures(self, result: LabResult, params: LvlmDebiasParams) -> list[dict[str, Any]]:  # type: ignore[override]
        a, m = result.arrays, result.metrics
        cf = params.content_free
        truth = f" — truth: {a['truth']}" if a.get("truth") else " — your image at the model's 32×32"
        unlike = (
            ""
            if a.get("truth")
            else " The model has only seen clevr-lite scenes (1–3 flat objects on grey); on any other image "
            "its answers describe colours it half-recognises, not the picture."
        )
        figs = [
            plots.image_pair(
                [("model input", a["image"])],
                f"The scene{truth}",
                notice="This is the 32×32 image the model sees. Small objects are a few pixels wide: "
                "that is where the language prior takes over." + unlike,
            ),
            plots.probability_bars(
                a["labels"],
                {
                    "p (with the image)": a["p"],
                    f"p_cf (content-free: {cf})": a["p_cf"],
                    "q (calibrated)": a["q"],
                },
                f"Post-hoc debias for “{a['question']}”: q ∝ p / p_cf",
                notice="p_cf is what the model answers with nothing to look at: its prior. Dividing by it "
                "removes the prior's share; an answer that only the prior supported shrinks in q.",
            ),
        ]
        if a["plain"] or a["vdd"]:
            figs.append(self._steps_table(a))
        if a["vdd"]:
            first = a["vdd"][0]
            figs.append(
                plots.probability_bars(
                    first["top"],
                    {
                        "with the image": first["p"],
                        f"content-free ({cf})": first["p_cf"],
                        "VDD": first["vdd"],
                    },
                    f"First answer token: kept by the cutoff {', '.join(first['kept'])}",
                    notice=f"Tokens below β = {params.beta:g} × the top probability are cut (VDD 0%). "
                    f"Among the rest, (1+α)ℓ − αℓ̃ with α = {params.alpha:g} boosts the tokens the image "
                    "supports more than the prior does.",
                )
            )
        probe = a.get("probe")
        if probe:
            figs.append(
                plots.probability_bars(
                    probe["labels"],
                    {"plain (blank image)": probe["p"], "post-hoc (against no image)": probe["q"]},
                    f"Blank-image probe: “{a['question']}” about a grey image with nothing in it",
                    notice=f"Plain: “{probe['plain_answer']}” at {probe['plain_confidence']:.0%} about an "
                    f"image that shows nothing. Calibrated: “{probe['posthoc_answer']}” at "
                    f"{probe['posthoc_confidence']:.0%}.",
                )
            )
        bal = m.get("balanced")
        if bal:
            rules = {"plain": "plain", "post-hoc": "posthoc", "debias sampling (VDD)": "vdd"}
            cats = ["accuracy", "yes-ratio", "hallucination (yes to absent)", "caption CHAIR_i"]
            series: dict[str, Sequence[float]] = {
                name: [
                    bal[k]["accuracy"],
                    bal[k]["yes_ratio"],
                    bal[k]["hallucination_rate"],
                    bal[k].get("caption_chair_i", float("nan")),
                ]
                for name, k in rules.items()
            }
            figs.append(
                plots.grouped_bars(
                    cats,
                    series,
                    f"Balanced split ({bal['n_questions']} questions, {bal['n_captions']} captions; "
                    f"content-free: {cf})",
                    yrange=(0, 1),
                    horizontal=True,  # long category names stack instead of colliding on a phone
                    notice="The truth says yes to 50% of these questions; without the image the model says "
                    f"yes {bal['yes_ratio_without_image']:.0%} of the time. Post-hoc has no caption bar: it "
                    "calibrates one answer token, not a free caption.",
                )
            )
        return figs

    @staticmethod
    def _steps_table(a: dict[str, Any]) -> dict[str, Any]:
        n = max(len(a["plain"]), len(a["vdd"]))

        def cell(seq: list[dict[str, Any]], i: int, key: str) -> str:
            return str(seq[i][key]) if i < len(seq) else ""

        plain = [
            f"{cell(a['plain'], i, 'token')} ({a['plain'][i]['p']:.0%})" if i < len(a["plain"]) else ""
            for i in range(n)
        ]
        vdd = [cell(a["vdd"], i, "token") for i in range(n)]
        kept = [", ".join(a["vdd"][i]["kept"]) if i < len(a["vdd"]) else "" for i in range(n)]
        change = [
            (f"{a['vdd'][i]['plain_pick']} → {a['vdd'][i]['token']}" if a["vdd"][i]["changed"] else "same")
            if i < len(a["vdd"])
            else ""
            for i in range(n)
        ]
        fig = go.Figure(
            go.Table(
                columnwidth=[60, 120, 110, 220, 150],
                header={
                    "values": ["step", "plain (p)", "debiased", "kept by the cutoff", "contrast"],
                    "align": "left",
                },
                cells={
                    "values": [list(range(1, n + 1)), plain, vdd, kept, change],
                    "align": "left",
                    "height": 28,
                },
            )
        )
        fig.update_layout(
            title="Plain and debiased decoding, token by token",
            height=min(700, 150 + 30 * n),
            width=760,  # a phone scrolls the table sideways rather than squeezing its columns together
            margin={"t": 70},
        )
        return plots.to_json(
            fig,
            notice="Each row is one token. “kept” lists the tokens that passed the plausibility cutoff; "
            "“contrast” shows where (1+α)ℓ − αℓ̃ picked a different token than ℓ alone from the same prefix.",
        )
