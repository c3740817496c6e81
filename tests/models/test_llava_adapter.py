"""The LLaVA adapter on a tiny, randomly initialised LlavaConfig the test builds and saves (no download):
its logits are the model's own, VDD without contrast or cutoff is transformers' greedy `generate`, and one
VDD step and the post-hoc numbers match a direct computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")  # the optional `vlm` extra; `dev` installs it

from backend.models.llava import LlavaScorer, posthoc_answer, vdd_generate  # noqa: E402

WORDS = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "USER:", "ASSISTANT:", "is", "there", "a", "red", "ball",
         "?", "yes", "no", "blue", "cube", "and"]  # fmt: skip
QUESTION = "is there a red ball ?"


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"},
    )  # fmt: skip
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=images, tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
            patch_size=8,
        ),
        text_config=LlamaConfig(
            vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, eos_token_id=3,
        ),
        image_token_index=4, vision_feature_layer=-1, vision_feature_select_strategy="default",
    )  # fmt: skip
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llava")
    LlavaForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def scorer(tiny_llava: Path) -> LlavaScorer:
    return LlavaScorer.load(str(tiny_llava), local_files_only=True)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8))


def test_logits_with_and_without_the_image(scorer: LlavaScorer, image: Image.Image) -> None:
    enc = scorer.inputs(image, QUESTION)
    assert (enc["input_ids"] == 4).sum() == 16  # a 4×4 patch grid of image tokens
    assert (scorer.inputs(None, QUESTION)["input_ids"] == 4).sum() == 0  # `none`: image tokens removed
    with torch.no_grad():
        ref = scorer.model(**enc).logits[0, -1].numpy()
    np.testing.assert_allclose(scorer.next_logits(image, QUESTION, []), ref, rtol=1e-5, atol=1e-5)
    assert np.abs(scorer.next_logits(None, QUESTION, []) - ref).max() > 1e-4


def test_vdd_without_contrast_or_cutoff_is_greedy_generate(scorer: LlavaScorer, image: Image.Image) -> None:
    enc = scorer.inputs(image, QUESTION)
    with torch.no_grad():
        out = scorer.model.generate(**enc, max_new_tokens=6, do_sample=False)
    ref = out[0, enc["input_ids"].shape[1] :].tolist()
    ref = ref[: ref.index(3)] if 3 in ref else ref  # up to </s>
    assert vdd_generate(scorer, image, QUESTION, alpha=0.0, beta=0.0, max_new_tokens=6) == ref


def test_one_vdd_step_and_posthoc_match_a_direct_computation(scorer: LlavaScorer, image: Image.Image) -> None:
    lg, lcf = scorer.next_logits(image, QUESTION, []), scorer.next_logits(None, QUESTION, [])
    p = np.exp(lg - lg.max())
    expected = int(np.argmax(np.where(p >= 0.1 * p.max(), 2 * lg - lcf, -np.inf)))
    first = vdd_generate(scorer, image, QUESTION, alpha=1.0, beta=0.1, max_new_tokens=1)
    assert first == ([] if expected == 3 else [expected])
    got = posthoc_answer(scorer, image, QUESTION, ["yes", "no"], top_k=None)
    yes, no = WORDS.index("yes"), WORDS.index("no")
    pair = np.exp(lg[[yes, no]] - lg.max())
    pair_cf = np.exp(lcf[[yes, no]] - lcf.max())
    p2, p2_cf = pair / pair.sum(), pair_cf / pair_cf.sum() + 1e-4
    np.testing.assert_allclose(got["q"], (p2 / p2_cf) / (p2 / p2_cf).sum(), rtol=1e-5)
