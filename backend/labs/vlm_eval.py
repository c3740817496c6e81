"""Decoding and evaluation of the project's VLM with and without the image: plain, post-hoc, debiased.

Compute only (arrays and numbers). `Scorer` is the one interface the debias code needs from a model:
next-token logits for a batch of prompts, with the image or with a content-free input in its place
(METHODS §7). The balanced-split metrics (accuracy, yes-ratio, hallucination) are measured here for the
three answer rules, and used by the lab and by the model's training card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from backend.data.clevr_lite import COLORS, COUNTS, SHAPES, balanced_questions, load_clevr_lite
from backend.data.splits import to_tensor
from backend.labs.vlm_debias_math import calibrate, choose, content_free, label_distribution, vdd_scores
from backend.models.vlm import EOS, PAD, SEP, VOCAB, encode, token_id

Condition = Literal["image", "none", "blank", "noise"]
CONTENT_FREE: tuple[str, ...] = ("none", "blank", "noise")
MAX_ANSWER = 16  # a three-object caption is 14 tokens + <eos>
LABEL_SPACES: dict[str, tuple[str, ...]] = {
    "exists": ("yes", "no"),
    "exists_shape": ("yes", "no"),
    "color": COLORS,
    "count": COUNTS,
}


def content_free_images(kind: str, n: int, seed: int = 0) -> torch.Tensor | None:
    """The "meaningless" visual input: None (image removed), a blank mid-grey image, or Gaussian noise."""
    if kind == "none":
        return None
    if kind == "blank":
        return torch.full((n, 3, 32, 32), 0.5)
    if kind == "noise":
        g = torch.Generator().manual_seed(seed)
        return (0.5 + 0.25 * torch.randn(n, 3, 32, 32, generator=g)).clamp(0, 1)
    raise ValueError(f"unknown content-free input {kind!r}; choose one of {', '.join(CONTENT_FREE)}")


@dataclass
class Scorer:
    """Next-token logits of the TinyVLM for right-padded prompts, with or without the image."""

    model: nn.Module
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @torch.no_grad()
    def next_logits(self, images: torch.Tensor | None, seqs: list[list[int]]) -> np.ndarray:
        """(B, V) logits of the token after each sequence; images (B, 3, 32, 32) or None (no image)."""
        t = max(len(s) for s in seqs)
        tokens = torch.full((len(seqs), t), PAD, dtype=torch.long)
        for i, s in enumerate(seqs):
            tokens[i, : len(s)] = torch.tensor(s)
        imgs = images.to(self.device) if images is not None else None
        out = self.model(imgs, tokens.to(self.device))  # (B, T, V)
        last = torch.tensor([len(s) - 1 for s in seqs], device=self.device)
        return out[torch.arange(len(seqs), device=self.device), last].float().cpu().numpy()


def prompt(question: str) -> list[int]:
    return [*encode(question), SEP]


@dataclass
class StepTrace:
    """One decoding step: what plain greedy would take, and what VDD kept, scored and took."""

    chosen: int
    logits: np.ndarray  # (V,) with the image
    logits_cf: np.ndarray | None = None  # (V,) content-free (VDD only)
    scores: np.ndarray | None = None  # (V,) VDD scores, −inf where cut
    kept: np.ndarray | None = None  # (V,) bool


def decode(
    scorer: Scorer,
    images: torch.Tensor,
    questions: list[str],
    *,
    debias: bool = False,
    cf_images: torch.Tensor | None = None,
    alpha: float = 1.0,
    beta: float = 0.1,
    temperature: float = 0.0,
    seed: int = 0,
    max_len: int = MAX_ANSWER,
    trace: bool = False,
) -> tuple[list[list[int]], list[list[StepTrace]]]:
    """Answers (token ids without <eos>) for a batch, plain or with visual debias decoding.

    The content-free logits use `cf_images` (None: the image removed). Greedy at temperature 0, else
    multinomial sampling from the (debiased) scores with a seeded generator."""
    rng = np.random.default_rng(seed)
    seqs = [prompt(q) for q in questions]
    answers: list[list[int]] = [[] for _ in questions]
    traces: list[list[StepTrace]] = [[] for _ in questions]
    live = list(range(len(questions)))
    for _ in range(max_len):
        if not live:
            break
        rows = [seqs[i] + answers[i] for i in live]
        lg = scorer.next_logits(images[live], rows)
        lcf = scorer.next_logits(cf_images[live] if cf_images is not None else None, rows) if debias else None
        still = []
        for j, i in enumerate(live):
            if lcf is not None:
                step = vdd_scores(lg[j], lcf[j], alpha, beta)
                tok = choose(step.scores, temperature, rng)
                if trace:
                    traces[i].append(StepTrace(tok, lg[j], lcf[j], step.scores, step.kept))
            else:
                tok = choose(lg[j], temperature, rng)
                if trace:
                    traces[i].append(StepTrace(tok, lg[j]))
            if tok != EOS:
                answers[i].append(tok)
                still.append(i)
        live = still
    return answers, traces


def posthoc(
    logits: np.ndarray, logits_cf: np.ndarray, labels: tuple[str, ...], top_k: int | None = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """p, p_cf (normalised + 1e-4) and q over the label space from first-answer-token logits (V,)."""
    ids = [token_id(w) for w in labels]
    p = label_distribution(logits, ids, top_k=top_k)
    p_cf = content_free(label_distribution(logits_cf, ids, top_k=top_k))
    return p, p_cf, calibrate(p, p_cf)


def mentioned_objects(text: str) -> list[tuple[str, str]]:
    """(colour, shape) pairs a caption names: every shape word with the colour word right before it."""
    words = text.split()
    return [
        (words[i - 1] if i > 0 and words[i - 1] in COLORS else "", w)
        for i, w in enumerate(words)
        if w in SHAPES
    ]


def hallucinated(text: str, objects: list[tuple[str, str, str]]) -> tuple[int, int]:
    """(objects named but absent, objects named): CHAIR_i's numerator and denominator, per caption."""
    present = {(c, s) for s, c, _ in objects}
    named = mentioned_objects(text)
    return sum((c, s) not in present for c, s in named), len(named)


def _batches(n: int, size: int) -> list[np.ndarray]:
    return [np.arange(i, min(i + size, n)) for i in range(0, n, size)]


def evaluate_balanced(
    scorer: Scorer,
    n_scenes: int = 300,
    *,
    seed: int = 0,
    cf: str = "none",
    alpha: float = 1.0,
    beta: float = 0.1,
    batch: int = 100,
    progress: Any = None,
) -> dict[str, Any]:
    """Accuracy, yes-ratio and hallucination on the balanced test split for plain, post-hoc and VDD.

    Short answers (yes/no, colour, count) are the first answer token: plain takes argmax ℓ, post-hoc
    argmax q over the question's label space, VDD argmax of its scores. Hallucination is POPE's (yes to an
    absent object) on existence questions and CHAIR_i (objects named but absent) on captions; post-hoc
    does not apply to free captions."""
    from backend.data.clevr_lite import scene_objects

    split = load_clevr_lite("test", n_scenes, seed)
    qas = balanced_questions(split.meta["objects"], seed)
    images = to_tensor(split.images)
    cf_all = content_free_images(cf, len(qas), seed)
    rules = ("plain", "posthoc", "vdd")
    answers: dict[str, list[str]] = {r: [""] * len(qas) for r in rules}
    yes_no_image: list[bool] = []
    short = [i for i, q in enumerate(qas) if q.kind != "caption"]
    caps = [i for i, q in enumerate(qas) if q.kind == "caption"]
    for k, idx in enumerate(_batches(len(short), batch)):
        rows = [short[i] for i in idx]
        seqs = [prompt(qas[i].question) for i in rows]
        lg = scorer.next_logits(images[rows], seqs)
        lcf = scorer.next_logits(cf_all[rows] if cf_all is not None else None, seqs)
        lnone = lcf if cf == "none" else scorer.next_logits(None, seqs)
        for j, i in enumerate(rows):
            labels = LABEL_SPACES[qas[i].kind]
            answers["plain"][i] = VOCAB[int(np.argmax(lg[j]))]
            answers["posthoc"][i] = labels[int(np.argmax(posthoc(lg[j], lcf[j], labels)[2]))]
            answers["vdd"][i] = VOCAB[int(np.argmax(vdd_scores(lg[j], lcf[j], alpha, beta).scores))]
            if labels[0] == "yes":
                yes_no_image.append(VOCAB[int(np.argmax(lnone[j]))] == "yes")
        if progress is not None:
            progress(0.5 * (k + 1) / len(_batches(len(short), batch)), "short answers")
    for k, idx in enumerate(_batches(len(caps), batch)):
        rows = [caps[i] for i in idx]
        qs = [qas[i].question for i in rows]
        cfi = cf_all[rows] if cf_all is not None else None
        plain, _ = decode(scorer, images[rows], qs)
        vdd, _ = decode(scorer, images[rows], qs, debias=True, cf_images=cfi, alpha=alpha, beta=beta)
        for j, i in enumerate(rows):
            answers["plain"][i] = " ".join(VOCAB[t] for t in plain[j])
            answers["vdd"][i] = " ".join(VOCAB[t] for t in vdd[j])
        if progress is not None:
            progress(0.5 + 0.5 * (k + 1) / len(_batches(len(caps), batch)), "captions")
    yn = [i for i, q in enumerate(qas) if q.kind in ("exists", "exists_shape")]
    absent = [i for i in yn if qas[i].absent]
    out: dict[str, Any] = {
        "n_questions": len(short),
        "n_yes_no": len(yn),
        "n_captions": len(caps),
        "truth_yes_ratio": float(np.mean([qas[i].answer == "yes" for i in yn])),
        "yes_ratio_without_image": float(np.mean(yes_no_image)),
    }
    for r in rules:
        a = answers[r]
        m: dict[str, Any] = {
            "accuracy": float(np.mean([a[i] == qas[i].answer for i in short])),
            "yes_no_accuracy": float(np.mean([a[i] == qas[i].answer for i in yn])),
            "yes_ratio": float(np.mean([a[i] == "yes" for i in yn])),
            "hallucination_rate": float(np.mean([a[i] == "yes" for i in absent])),  # POPE false positives
        }
        for kind in ("color", "count"):
            sel = [i for i in short if qas[i].kind == kind]
            m[f"{kind}_accuracy"] = float(np.mean([a[i] == qas[i].answer for i in sel])) if sel else None
        if r != "posthoc":
            counts = [hallucinated(a[i], scene_objects(split.meta["objects"][i])) for i in caps]
            named = sum(c[1] for c in counts)
            m["caption_chair_i"] = sum(c[0] for c in counts) / named if named else 0.0
            m["caption_exact"] = float(np.mean([a[i] == qas[i].answer for i in caps]))
        out[r] = m
    return out
