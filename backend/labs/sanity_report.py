"""Measure the attribution lab's checks over a larger probe set than the lab's classroom default.

    BIASLAB_TRAIN_THREADS=1 python -m backend.labs.sanity_report --models cnn-shapes deit-shapes \
        convit-shapes mixer-shapes --images 16 --seeds 5 --out sanity_report.json

Per model: the sanity statistic (Kendall τ-b, native-resolution maps) between trained and randomised maps
as mean ± std over images × seeds, for all layers at once and for Adebayo's cascade; the zero fractions;
and p(c | x′) over test images for the blurred baseline and for the expected-gradients references.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.labs.attribution import blurred, reference_images
from backend.labs.base import LoadedModel
from backend.labs.probe import preprocess_batch, probe_images
from backend.labs.saliency import cam_target, gradcam, integrated_gradients_batch
from backend.labs.sanity import run_sanity


def baseline_probabilities(m: LoadedModel, n: int, refs: int, seed: int) -> dict[str, Any]:
    """Over n test images, with c = the model's prediction on each: p(c | blurred x) and the mean over
    the references of p(c | x′_k); and the share of blurred images the model gives one single class."""
    images, _ = probe_images(m.entry, n, seed + 100)
    xs = preprocess_batch(images, m.module)
    r = reference_images(m, refs, seed)
    assert r is not None
    with torch.no_grad():
        c = m.module(xs).argmax(-1)
        pb = torch.softmax(m.module(blurred(xs)), -1)
        pr = torch.softmax(m.module(r), -1).mean(0)  # (classes,)
    p_blur = pb[torch.arange(len(c)), c]
    top = pb.argmax(-1)
    counts = torch.bincount(top, minlength=pb.shape[1])
    return {
        "n": n,
        "blurred_p_c_mean": float(p_blur.mean()),
        "blurred_holds_class_fraction": float((top == c).float().mean()),
        "blurred_most_common_class": m.entry.class_names[int(counts.argmax())],
        "blurred_most_common_share": float(counts.max() / len(c)),
        "expected_refs_p_c_mean": float(pr[c].mean()),
        "expected_refs_p_c_max": float(pr.max()),
    }


def sanity_over_probe(m: LoadedModel, images: int, seeds: int, ig_steps: int, seed: int) -> dict[str, Any]:
    model = m.module
    imgs, _ = probe_images(m.entry, images, seed)
    xs = preprocess_batch(imgs, model)
    with torch.no_grad():
        classes = model(xs).argmax(-1)
    refs = reference_images(m, 8, seed)
    assert refs is not None
    bases = refs[torch.arange(len(xs)) % len(refs)]
    target = cam_target(m.entry, model)

    def maps(mod: torch.nn.Module, cascade: bool) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if target.path:
            out["GradCAM"] = gradcam(mod, target, xs, classes, upsample=False)[:, 0].cpu().numpy()
        ig, _ = integrated_gradients_batch(mod, xs, bases, classes, ig_steps)
        out["|IG|"] = ig.sum(1).abs().cpu().numpy()
        return out

    res = run_sanity(m.entry, model, maps, xs, seeds=[seed + i for i in range(seeds)])
    return res.metrics()


def main(argv: list[str] | None = None) -> int:
    from backend.jobs.execute import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--models", nargs="+", default=["cnn-shapes", "deit-shapes", "convit-shapes", "mixer-shapes"]
    )
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ig-steps", type=int, default=8)
    ap.add_argument("--baseline-images", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    report: dict[str, Any] = {"args": vars(args)}
    for name in args.models:
        t = time.perf_counter()
        m = load_model(name, "cpu")
        entry: dict[str, Any] = {"baselines": baseline_probabilities(m, args.baseline_images, 8, args.seed)}
        entry["sanity"] = sanity_over_probe(m, args.images, args.seeds, args.ig_steps, args.seed)
        entry["seconds"] = round(time.perf_counter() - t, 1)
        report[name] = entry
        print(name, json.dumps(entry), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
