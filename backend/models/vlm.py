"""`vlm-clevr`: a tiny vision-language model trained on clevr-lite, for the lvlm-debias lab (METHODS §7).

LLaVA-shaped (Liu et al., NeurIPS 2023, arXiv 2304.08485) at toy scale: a CNN turns the 32×32 image into a
4×4 grid of visual tokens, which are the prefix of a small decoder-only transformer over a word vocabulary;
the question follows, then `<sep>`, then the answer is decoded token by token until `<eos>`. Short answers
(yes/no, a colour, a count) and captions come out of the same decoder.

Some training examples have no image: the 16 visual tokens are replaced by one learned no-image token, so
"no image" is an input the model knows (METHODS §7, image dropout with `[NOIMG]`). The text positions do
not depend on the prefix length, so removing the image shifts nothing else, as LLaVA-Align's `none` mode.
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backend.data.clevr_lite import COLORS, COUNTS, SHAPES, SIZES
from backend.models.registry import ModelEntry, register_model

SPECIALS: tuple[str, ...] = ("<pad>", "<unk>", "<sep>", "<eos>")
WORDS: tuple[str, ...] = (
    *("is", "there", "a", "what", "color", "the", "how", "many", "objects", "are", "describe", "scene"),
    *("?", ".", "and", "yes", "no"),
    *COUNTS,
    *SIZES,
    *COLORS,
    *SHAPES,
)
VOCAB: tuple[str, ...] = SPECIALS + WORDS
PAD, UNK, SEP, EOS = range(4)
_INDEX = {w: i for i, w in enumerate(VOCAB)}
_SYNONYMS = {"colour": "color", "sphere": "ball", "spheres": "ball", "balls": "ball", "cubes": "cube"}
MAX_TEXT = 40  # question + <sep> + answer tokens
GRID = 4  # visual tokens per side


def words(text: str) -> list[str]:
    """Lower-case words with "?" and "." split off, British spellings mapped to the vocabulary's."""
    raw = re.findall(r"[a-z]+|[?.]", text.lower())
    return [_SYNONYMS.get(w, w) for w in raw]


def encode(text: str) -> list[int]:
    return [_INDEX.get(w, UNK) for w in words(text)]


def unknown_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in _INDEX]


def decode(ids: list[int]) -> str:
    return " ".join(VOCAB[i] for i in ids if i not in (PAD, SEP, EOS))


def token_id(word: str) -> int:
    return _INDEX[word]


class ImageEncoder(nn.Module):
    """(B, 3, 32, 32) in [0, 1] -> (B, 16, d) visual tokens with learned 2-D positions."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        # Strided from the first layer: a 2-core CPU budget (a 2-px object still covers a 3×3 window).
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1),  # 16²
            nn.GELU(),
            nn.Conv2d(32, 64, 3, 2, 1),  # 8²
            nn.GELU(),
            nn.Conv2d(64, dim, 3, 2, 1),  # 4²
        )
        self.pos = nn.Parameter(torch.zeros(1, GRID * GRID, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.25  # fixed normalisation: the scenes' colours are the signal
        return self.net(x).flatten(2).transpose(1, 2) + self.pos  # (B, 16, d)


class Block(nn.Module):
    """Pre-norm transformer block; attention through SDPA with an explicit boolean mask."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:  # allowed (B, 1, L, L)
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, H, L, d/H)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class TinyVLM(nn.Module):
    """Visual prefix (16 tokens, or the single no-image token) + causal text decoder over VOCAB."""

    def __init__(self, dim: int = 64, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.encoder = ImageEncoder(dim)
        self.noimg = nn.Parameter(torch.zeros(1, 1, dim))  # the learned no-image token
        nn.init.trunc_normal_(self.noimg, std=0.02)
        self.tok = nn.Embedding(len(VOCAB), dim)
        self.pos = nn.Embedding(MAX_TEXT, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, len(VOCAB))

    def forward(
        self, images: torch.Tensor | None, tokens: torch.Tensor, has_image: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, T, V) at every text position (position t predicts token t + 1).

        images (B, 3, 32, 32) or None (no image for any row); has_image (B,) bool picks rows that get the
        no-image token instead (the rest of their visual slots are masked out)."""
        b, t = tokens.shape
        dev = tokens.device
        p = GRID * GRID
        if images is None:
            has_image = torch.zeros(b, dtype=torch.bool, device=dev)
            vis = self.noimg.expand(b, p, -1)
        else:
            if has_image is None:
                has_image = torch.ones(b, dtype=torch.bool, device=dev)
            vis = torch.where(has_image[:, None, None], self.encoder(images), self.noimg.expand(b, p, -1))
        text = self.tok(tokens) + self.pos(torch.arange(t, device=dev))
        x = torch.cat([vis, text], 1)  # (B, p + T, d)
        # Keys: a row without an image sees only its first visual slot (the no-image token).
        slot = torch.arange(p, device=dev)
        key_ok = torch.cat([has_image[:, None] | (slot == 0)[None], tokens != PAD], 1)  # (B, p + T)
        i = torch.arange(p + t, device=dev)
        causal = (i[None, :] <= i[:, None]) | (i[None, :] < p)  # the visual prefix is seen in full
        allowed = (causal[None] & key_ok[:, None, :])[:, None]  # (B, 1, L, L)
        allowed = allowed | torch.eye(p + t, dtype=torch.bool, device=dev)  # no empty rows (masked slots)
        for blk in self.blocks:
            x = blk(x, allowed)
        return self.head(self.norm(x[:, p:]))  # (B, T, V)


def build_vlm() -> nn.Module:
    return TinyVLM()


VLM_RECIPE: dict[str, Any] = {
    "dataset": "clevr-lite",
    "train_size": 20000,  # scenes; every step draws fresh questions about them
    "test_size": 600,  # balanced scenes for the card's metrics
    "batch_size": 64,
    "steps": 5000,
    "lr": 2e-3,
    "weight_decay": 0.01,
    "warmup_frac": 0.05,
    "grad_clip": 1.0,
    "noimg_frac": 0.1,  # examples trained with the no-image token instead of the image
}

register_model(
    ModelEntry(
        name="vlm-clevr",
        family="vlm",
        task="vqa",
        dataset="clevr-lite",
        builder=build_vlm,
        input_size=(3, 32, 32),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        class_names=VOCAB,  # the decoder's word vocabulary
        description="Tiny LLaVA-shaped VLM: CNN visual tokens + 2-layer decoder (width 64) over a 33-token "
        "vocabulary, trained on clevr-lite with a language prior and 10% no-image examples.",
        citation="Liu et al., Visual Instruction Tuning (LLaVA), NeurIPS 2023 (arXiv 2304.08485); debiasing: "
        "Zhang et al., arXiv 2403.05262",
        weights="vlm-clevr",
        recipe=VLM_RECIPE,
    )
)
