"""Adapter for Hugging Face transformers LLaVA-family models: the debias rules of METHODS §7 on a real VLM.

The debias code needs only next-token logits with the image and with a content-free input in its place
(LLaVA-Align's `none`: the image tokens removed from the prompt; or a blank or noise image). This module
gives them for any `LlavaForConditionalGeneration` checkpoint, from a local path or the Hub, and runs
post-hoc calibration and visual debias decoding on it with the same functions as the lab
(`backend/labs/vlm_debias_math.py`).

transformers is an optional extra (`pip install inductive-bias-lab[vlm]`); it is imported only here, when
a model is loaded. Decoding re-runs the full prompt at every token (no KV cache): simple, and exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from backend.models.registry import ModelNotAvailable

ContentFree = Literal["none", "blank", "noise"]
# LLaVA-1.5's conversation format; `{image}` is "<image>\n" with the image and "" without it.
DEFAULT_TEMPLATE = "USER: {image}{question} ASSISTANT:"


def content_free_image(
    kind: ContentFree, size: tuple[int, int] = (336, 336), seed: int = 0
) -> Image.Image | None:
    if kind == "none":
        return None
    if kind == "blank":
        return Image.new("RGB", size, (128, 128, 128))
    rng = np.random.default_rng(seed)
    noise = np.clip(128 + 64 * rng.standard_normal((size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(noise)


@dataclass
class LlavaScorer:
    """Next-token logits of a transformers LLaVA model for a question, with the image or without it."""

    model: Any  # transformers LlavaForConditionalGeneration
    processor: Any  # its LlavaProcessor
    template: str = DEFAULT_TEMPLATE
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def load(
        cls,
        path_or_id: str,
        *,
        device: str = "cpu",
        local_files_only: bool = False,
        template: str = DEFAULT_TEMPLATE,
    ) -> LlavaScorer:
        """Load model and processor from a local directory or a Hub id (the Hub needs a network)."""
        try:
            from transformers import AutoProcessor, LlavaForConditionalGeneration
        except ImportError as exc:  # the optional extra is not installed
            raise ModelNotAvailable(
                "LLaVA models need transformers: pip install 'inductive-bias-lab[vlm]'"
            ) from exc
        try:
            processor = AutoProcessor.from_pretrained(path_or_id, local_files_only=local_files_only)
            model = LlavaForConditionalGeneration.from_pretrained(
                path_or_id, local_files_only=local_files_only
            )
        except OSError as exc:
            raise ModelNotAvailable(f"could not load a LLaVA model from {path_or_id!r}: {exc}") from exc
        return cls(model.eval().to(device), processor, template, torch.device(device))

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    def inputs(self, image: Image.Image | None, question: str) -> dict[str, torch.Tensor]:
        """The prompt's model inputs; without an image the image placeholder is left out of the text."""
        image_token = getattr(self.processor, "image_token", "<image>")
        if image is None:
            text = self.template.format(image="", question=question)
            enc = self.tokenizer(text, return_tensors="pt")
        else:
            text = self.template.format(image=f"{image_token}\n", question=question)
            enc = self.processor(images=image.convert("RGB"), text=text, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    @torch.no_grad()
    def next_logits(self, image: Image.Image | None, question: str, answer: list[int]) -> np.ndarray:
        """(V,) logits of the token after the prompt and the answer so far."""
        enc = self.inputs(image, question)
        ids = torch.cat([enc["input_ids"], torch.tensor([answer], dtype=torch.long, device=self.device)], 1)
        kwargs = {"pixel_values": enc["pixel_values"]} if "pixel_values" in enc else {}
        out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        return out.logits[0, -1].float().cpu().numpy()

    def label_ids(self, labels: list[str]) -> list[int]:
        """Each label's first token (as `calibrate_label_dict` matches the first generated position)."""
        ids = []
        for word in labels:
            toks = self.tokenizer.encode(word, add_special_tokens=False)
            if not toks:
                raise ValueError(f"label {word!r} has no token in this tokenizer")
            ids.append(int(toks[0]))
        return ids

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True)).strip()


def posthoc_answer(
    scorer: LlavaScorer,
    image: Image.Image,
    question: str,
    labels: list[str],
    *,
    cf: ContentFree = "none",
    top_k: int | None = 10,
) -> dict[str, Any]:
    """p, p_cf and q = calibrated (W = diag(p_cf)⁻¹) over `labels`, and both answers."""
    # Deferred: importing backend.labs from a model module at import time would load every lab.
    from backend.labs.vlm_debias_math import calibrate, content_free, label_distribution

    ids = scorer.label_ids(labels)
    p = label_distribution(scorer.next_logits(image, question, []), ids, top_k=top_k)
    cf_image = content_free_image(cf, image.size)
    p_cf = content_free(label_distribution(scorer.next_logits(cf_image, question, []), ids, top_k=top_k))
    q = calibrate(p, p_cf)
    return {
        "p": p,
        "p_cf": p_cf,
        "q": q,
        "plain_answer": labels[int(np.argmax(p))],
        "debiased_answer": labels[int(np.argmax(q))],
    }


def vdd_generate(
    scorer: LlavaScorer,
    image: Image.Image,
    question: str,
    *,
    alpha: float = 1.0,
    beta: float = 0.1,
    cf: ContentFree = "none",
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[int]:
    """Visual debias decoding: at each token (1+α)ℓ − αℓ̃ over the tokens with p ≥ β · max p."""
    from backend.labs.vlm_debias_math import choose, vdd_scores

    rng = np.random.default_rng(seed)
    cf_image = content_free_image(cf, image.size, seed)
    answer: list[int] = []
    for _ in range(max_new_tokens):
        step = vdd_scores(
            scorer.next_logits(image, question, answer),
            scorer.next_logits(cf_image, question, answer),
            alpha,
            beta,
        )
        tok = choose(step.scores, temperature, rng)
        if tok == scorer.eos_id:
            break
        answer.append(tok)
    return answer
