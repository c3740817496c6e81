"""Diffusion sampling: memorisation against generalisation.

Sampler: deterministic DDIM (Song, Meng & Ermon, ICLR 2021, arXiv 2010.02502) in the variance-exploding
form, from pure noise (σ = 1 around grey 0.5) down a geometric schedule to σ = 0.01, the same for every
denoiser (backend/labs/denoising.py `ddim_sample`). Every step is published as a partial result, and
the job stops at the next step when cancelled (each step reports progress, which raises on cancel).
Each sample is shown beside its most similar training image: the empirical optimal denoiser, the exact
posterior mean of the training set, can only return training images (Kamb & Ganguli, "An analytic
theory of creativity in convolutional diffusion models", arXiv 2412.20292; Lukoianov et al.,
arXiv 2509.09672); a network that generalises should not.

Two-subset experiment (Kadkhodaie et al., ICLR 2024, arXiv 2310.02557, Fig. 1; METHODS §6b): UNets
trained on disjoint sets S₁, S₂ of N disks, sampled from the same noise. Small N: each returns its own
training images (the two samples differ). Large N: both produce the same new image.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from backend import plots
from backend.data import load_dataset
from backend.data.denoise_sets import gray_tensor
from backend.labs import denoising as dn
from backend.labs.base import Lab, LabContext, LabParams, LabResult, LoadedModel, register_lab
from backend.models.unet import MEMORISATION_N
from backend.train.denoiser import training_images

SIMILARITY = "cosine similarity of mean-subtracted images"


class SamplingParams(LabParams):
    experiment: Literal["sampler", "two subsets"] = Field(
        default="sampler",
        description="Sample one dataset's denoisers step by step, or the two-subset memorisation experiment "
        "(UNets trained on disjoint sets of N disks)",
    )
    dataset: Literal["patches", "faces", "digits", "disks"] = Field(
        default="faces", description="The data the denoisers were trained on or computed from (sampler)"
    )
    denoiser: Literal["all", "unet", "wiener", "locality", "optimal"] = Field(
        default="all", description="Which denoiser samples (sampler); all four side by side by default"
    )
    steps: int = Field(default=8, ge=2, le=50, description="Sampler steps (noise levels from 1 to 0.01)")
    n_samples: int = Field(default=2, ge=1, le=8, description="Samples (one noise seed each)")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="The starting noise")


@register_lab
class DiffusionSamplingLab(Lab):
    name = "diffusion-sampling"
    title = "Diffusion sampling"
    description = (
        "Sample each denoiser step by step and compare every sample with its nearest training image; "
        "the two-subset experiment shows memorisation giving way to generalisation as N grows."
    )
    Params = SamplingParams
    model_tasks = ()
    needs_image = False
    max_models = 0

    def run(self, ctx: LabContext, params: SamplingParams) -> LabResult:  # type: ignore[override]
        if ctx.load_model is None:
            raise RuntimeError("this lab loads its denoisers itself and needs a model loader")
        if params.experiment == "two subsets":
            return self._two_subsets(ctx, params)
        kinds = dn.KINDS if params.denoiser == "all" else (params.denoiser,)
        dataset = dn.DATASETS[params.dataset]
        models = {k: ctx.load_model(f"{k}-{params.dataset}") for k in kinds}
        train = gray_tensor(load_dataset(dataset, "train", n=2000, seed=0).images).reshape(-1, 256).numpy()
        sigmas = dn.sigma_schedule(params.steps)
        start = self._start(params.n_samples, params.seed).to(ctx.device)
        trajectories: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
        total = len(kinds) * len(sigmas)
        done = 0

        def publish(step: dn.SamplerStep, kind: str) -> None:
            nonlocal done
            done += 1
            ctx.progress(done / total, f"{kind}: step {step.step + 1} of {len(sigmas)}, σ = {step.sigma:.3f}")
            trajectories[kind].append(step.x0[:, 0].cpu().numpy())
            ctx.publish(self._partial(trajectories, sigmas, params))

        samples: dict[str, np.ndarray] = {}
        for kind, m in models.items():
            module = m.module.to(ctx.device).eval()
            out = dn.ddim_sample(module, start, sigmas, lambda s, k=kind: publish(s, k))  # type: ignore[misc]
            samples[kind] = out[:, 0].cpu().numpy()
        return self._final(trajectories, samples, train, sigmas, params)

    @staticmethod
    def _start(n: int, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return 0.5 + torch.randn(n, 1, 16, 16, generator=gen)  # σ_max = 1 around mid-grey

    def _partial(
        self, trajectories: dict[str, list[np.ndarray]], sigmas: list[float], params: SamplingParams
    ) -> LabResult:
        last = {k: t[-1] for k, t in trajectories.items() if t}
        steps = {k: len(t) for k, t in trajectories.items() if t}
        text = "; ".join(f"{k}: step {n} of {len(sigmas)}" for k, n in steps.items())
        return LabResult({"partial": last, "steps": steps, "sigmas": sigmas}, {"steps_done": steps}, text)

    def _final(
        self,
        trajectories: dict[str, list[np.ndarray]],
        samples: dict[str, np.ndarray],
        train: np.ndarray,
        sigmas: list[float],
        params: SamplingParams,
    ) -> LabResult:
        metrics: dict[str, Any] = {"similarity": SIMILARITY, "dataset": dn.DATASETS[params.dataset]}
        nearest: dict[str, np.ndarray] = {}
        for kind, s in samples.items():
            idx, sim = dn.nearest(s.reshape(len(s), -1), train)
            nearest[kind] = train[idx].reshape(-1, 16, 16)
            metrics[kind] = {
                "nearest_similarity": [float(v) for v in sim],
                "mean_nearest_similarity": float(sim.mean()),
                "nearest_index": [int(i) for i in idx],
            }
        text = (
            "Similarity of each sample to its nearest training image (1 = a copy): "
            + "; ".join(f"{dn.KIND_LABEL[k]} {metrics[k]['mean_nearest_similarity']:.3f}" for k in samples)
            + f" (mean of {params.n_samples}, {SIMILARITY})."
        )
        arrays = {"samples": samples, "nearest": nearest, "trajectories": trajectories, "sigmas": sigmas}
        return LabResult(arrays, metrics, text)

    def _two_subsets(self, ctx: LabContext, params: SamplingParams) -> LabResult:
        assert ctx.load_model is not None
        sigmas = dn.sigma_schedule(params.steps)
        start = self._start(params.n_samples, params.seed).to(ctx.device)
        between: list[np.ndarray] = []
        to_train_a: list[np.ndarray] = []
        to_train_b: list[np.ndarray] = []
        pairs: dict[str, np.ndarray] = {}
        for i, n in enumerate(MEMORISATION_N):
            ctx.progress(i / len(MEMORISATION_N), f"N = {n}: sampling both models")
            out: dict[str, np.ndarray] = {}
            for s in ("a", "b"):
                m: LoadedModel = ctx.load_model(f"unet-disks-n{n}-{s}")
                x = dn.ddim_sample(m.module.to(ctx.device).eval(), start, sigmas)[:, 0].cpu().numpy()
                out[s] = x.reshape(len(x), -1)
                train = training_images(m.entry.recipe, seed=0).reshape(-1, 256).numpy()
                _, sim = dn.nearest(out[s], train)
                (to_train_a if s == "a" else to_train_b).append(sim)
            between.append(dn.centred_cosine(out["a"], out["b"]))
            pairs[str(n)] = np.stack([out["a"], out["b"]]).reshape(2, -1, 16, 16)
        metrics: dict[str, Any] = {"similarity": SIMILARITY, "N": list(MEMORISATION_N)}
        copy = [float((a.mean() + b.mean()) / 2) for a, b in zip(to_train_a, to_train_b, strict=True)]
        for label, vals in (("between_models", between), ("a_to_S1", to_train_a), ("b_to_S2", to_train_b)):
            metrics[label] = {
                "mean": [float(v.mean()) for v in vals],
                "std": [float(v.std()) for v in vals],
            }
        text = (
            "Two UNets on disjoint sets of N disks, sampled from the same noise: "
            + "; ".join(
                f"N = {n}: samples agree {metrics['between_models']['mean'][i]:.2f}, "
                f"copy their training set {copy[i]:.2f}"
                for i, n in enumerate(MEMORISATION_N)
            )
            + f" ({SIMILARITY}, mean of {params.n_samples} seeds)."
        )
        return LabResult({"pairs": pairs}, metrics, text)

    def figures(self, result: LabResult, params: SamplingParams) -> list[dict[str, Any]]:  # type: ignore[override]
        a = result.arrays
        if "partial" in a:
            live = [(f"{k}, step {a['steps'][k]}", dn.gray_rgb(x[0])) for k, x in a["partial"].items()]
            return [
                plots.image_grid(
                    live,
                    cols=4,
                    title="Sampling in progress: each denoiser's current estimate x̂ of sample 1",
                    notice="Each step removes some noise; the estimate sharpens from a blur of the data's "
                    "mean into one image.",
                )
            ]
        if "pairs" in a:
            return self._two_subset_figures(result, params)
        figs = []
        for k, s in a["samples"].items():
            sims = result.metrics[k]["nearest_similarity"]
            panels: list[tuple[str, np.ndarray]] = []
            for j in range(len(s)):
                panels += [
                    (f"sample {j + 1}", dn.gray_rgb(s[j])),
                    (f"nearest training<br>sim {sims[j]:.3f}", dn.gray_rgb(a["nearest"][k][j])),
                ]
            figs.append(
                plots.image_grid(
                    panels,
                    f"{dn.KIND_LABEL[k]}: samples beside their nearest training images",
                    cols=4,
                    notice="Similarity 1.000 means the sample is a copy of a training image. The empirical "
                    "optimal denoiser can only copy; a denoiser that generalises makes new images.",
                )
            )
        traj = []
        for k, steps in a["trajectories"].items():
            picks = sorted({0, len(steps) // 3, 2 * len(steps) // 3, len(steps) - 1})
            traj += [(f"{k}<br>σ = {a['sigmas'][p]:.2f}", dn.gray_rgb(steps[p][0])) for p in picks]
        figs.append(
            plots.image_grid(
                traj,
                "Trajectory of sample 1: the clean-image estimate x̂ at four steps, per denoiser",
                cols=4,
                notice="Read each row left to right: at high noise every denoiser predicts a blur; the "
                "image is decided in the middle steps.",
            )
        )
        return figs

    @staticmethod
    def _two_subset_figures(result: LabResult, params: SamplingParams) -> list[dict[str, Any]]:
        m = result.metrics
        ns = [float(n) for n in m["N"]]
        figs = [
            plots.line_chart(
                ns,
                {
                    "sample from S₁'s model vs sample from S₂'s model": m["between_models"]["mean"],
                    "S₁ model's sample vs its nearest S₁ image": m["a_to_S1"]["mean"],
                    "S₂ model's sample vs its nearest S₂ image": m["b_to_S2"]["mean"],
                },
                "Memorisation to generalisation: two UNets on disjoint training sets of N disks",
                xaxis_title="training images N (per model)",
                yaxis_title=f"similarity ({SIMILARITY})",
                error={
                    "sample from S₁'s model vs sample from S₂'s model": m["between_models"]["std"],
                    "S₁ model's sample vs its nearest S₁ image": m["a_to_S1"]["std"],
                    "S₂ model's sample vs its nearest S₂ image": m["b_to_S2"]["std"],
                },
                log_x=True,
                x_ticks=ns,
                notice="Memorising models copy their own training images (high similarity to the training "
                "set) and so disagree with each other; generalising models agree with each other even "
                "though they share no training image. Error bars: spread over the seeds.",
            )
        ]
        pairs: list[tuple[str, np.ndarray]] = []
        for n, pair in result.arrays["pairs"].items():
            pairs += [
                (f"N = {n}, S₁ model", dn.gray_rgb(pair[0][0])),
                (f"N = {n}, S₂ model", dn.gray_rgb(pair[1][0])),
            ]
        figs.append(
            plots.image_grid(
                pairs,
                "Sample 1 of each model, from the same starting noise",
                cols=4,
                notice="Same noise, different training sets: identical pairs mean the models learned the "
                "same density rather than their own images.",
            )
        )
        return figs
