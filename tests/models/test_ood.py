"""The out-of-distribution notice: the k-NN score against a brute-force calculation, the calibrated
threshold, and the real check through `run_lab` (scikit-image photos flagged, shape examples not)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from backend.data.examples import PHOTOS, list_examples, load_example
from backend.jobs.execute import run_lab
from backend.models import ood
from backend.models.ood import Reference, cached_fit, fit_reference, reference_model


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def test_score_is_the_distance_to_the_kth_nearest_training_embedding() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(50, 6))
    queries = rng.normal(size=(7, 6))
    k = 4
    ref = Reference("toy", "none", train, k, 0.0, np.empty(0))
    brute = np.sort(np.linalg.norm(queries[:, None, :] - train[None, :, :], axis=-1), axis=1)[:, k - 1]
    np.testing.assert_allclose(ref.scores(queries, chunk=3), brute, rtol=1e-10)  # chunks of 3, 3 and 1
    # and against scikit-learn's exact nearest neighbours
    dist, _ = NearestNeighbors(n_neighbors=k).fit(train).kneighbors(queries)
    np.testing.assert_allclose(ref.scores(queries), dist[:, -1], rtol=1e-10)


def test_threshold_is_the_validation_quantile() -> None:
    from backend.models.registry import create_model

    module = create_model("cnn-shapes", device="cpu")
    ref = fit_reference(
        "shapes", "cnn-shapes", module, torch.device("cpu"), n_train=300, n_val=200, quantile=0.9
    )
    assert ref.threshold == pytest.approx(float(np.quantile(ref.val_scores, 0.9)))
    assert np.mean(ref.val_scores > ref.threshold) <= 0.1 + 1e-9
    # unit-norm embeddings: distances lie in [0, 2]
    assert ref.val_scores.min() >= 0.0 and ref.val_scores.max() <= 2.0


def test_the_fitted_reference_is_kept_on_disk_until_the_weights_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.models.registry import create_model

    fits: list[str] = []

    def small_fit(dataset: str, name: str, module: torch.nn.Module, device: torch.device) -> Reference:
        fits.append(name)  # a smaller fit than the default: the cache does not depend on its size
        return fit_reference(dataset, name, module, device, n_train=200, n_val=100)

    monkeypatch.setattr(ood, "fit_reference", small_fit)
    cpu = torch.device("cpu")
    module = create_model("cnn-shapes", device="cpu")
    first = cached_fit("shapes", "cnn-shapes", module, cpu, tmp_path)
    again = cached_fit("shapes", "cnn-shapes", module, cpu, tmp_path)  # as a new process would
    assert fits == ["cnn-shapes"]
    np.testing.assert_array_equal(again.train, first.train)
    np.testing.assert_array_equal(again.val_scores, first.val_scores)
    assert (again.threshold, again.k, again.dataset) == (first.threshold, first.k, first.dataset)

    changed = copy.deepcopy(module)
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    assert not np.array_equal(cached_fit("shapes", "cnn-shapes", changed, cpu, tmp_path).train, first.train)
    assert len(fits) == 2 and len(list((tmp_path / "ood").glob("*.safetensors"))) == 2

    for f in (tmp_path / "ood").glob("*.safetensors"):
        f.write_bytes(b"truncated")  # a damaged cache is refitted, not an error
    assert cached_fit("shapes", "cnn-shapes", module, cpu, tmp_path).threshold == first.threshold
    assert len(fits) == 3
    (blocked := tmp_path / "not-a-dir").write_text("")  # an unwritable cache still gives a reference
    assert cached_fit("shapes", "cnn-shapes", module, cpu, blocked).threshold == first.threshold


def test_an_image_scored_before_is_not_embedded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.models.preprocess import preprocess
    from backend.models.registry import create_model

    device = torch.device("cpu")
    module = create_model("cnn-shapes", device="cpu")
    ref = fit_reference("shapes", "cnn-shapes", module, device, n_train=60, n_val=20)
    embedded: list[int] = []
    real_embed = ood.embed

    def counting_embed(model: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
        embedded.append(x.shape[0])
        return real_embed(model, x, batch)

    monkeypatch.setattr(ood, "embed", counting_embed)
    monkeypatch.setattr(ood, "SEEN_IMAGES", 2)
    circle, square, photo = (load_example(n) for n in ("shapes-circle", "shapes-square", "coffee"))

    first = ood.score_image(circle, ref, module, device)
    expected = float(ref.scores(real_embed(module, preprocess(circle, module)))[0])  # computed afresh
    assert first == expected and len(embedded) == 1
    assert ood.score_image(circle.copy(), ref, module, device) == first  # same pixels, another object
    assert len(embedded) == 1
    assert ood.score_image(square, ref, module, device) != first
    assert len(embedded) == 2
    ood.score_image(photo, ref, module, device)  # a third image: the oldest, the circle, is dropped
    assert len(embedded) == 3
    ood.score_image(square, ref, module, device)
    assert len(embedded) == 3
    assert ood.score_image(circle, ref, module, device) == first and len(embedded) == 4


def test_only_datasets_with_a_reference_get_a_verdict() -> None:
    assert reference_model(["shapes"]) == "cnn-shapes"
    assert reference_model(["imagenet"]) is None


MODELS = ["deit-shapes", "mlp-shapes"]  # the two whose own embeddings miss most photos


@pytest.mark.parametrize("photo", [*PHOTOS, "digit-3"])
def test_photos_get_the_notice(photo: str) -> None:
    out = run_lab("predict", MODELS, load_example(photo), {"top_k": 3}, device="cpu")
    ood = out["metrics"]["ood"]
    assert ood["in_distribution"] is False and ood["score"] > ood["threshold"]
    assert out["text"].startswith("Out of distribution")


def test_shape_examples_do_not() -> None:
    shapes = [e.name for e in list_examples() if e.name.startswith("shapes-")]
    assert len(shapes) == 8
    for name in shapes:
        out = run_lab("predict", MODELS, load_example(name), {"top_k": 3}, device="cpu")
        ood = out["metrics"]["ood"]
        assert ood["in_distribution"] is True, (name, ood)
        assert not out["text"].startswith("Out of distribution")


def test_labs_without_an_image_get_no_verdict() -> None:
    out = run_lab("sample-efficiency", [], None, {}, device="cpu")
    assert "ood" not in out["metrics"]
