"""Run as `python -m backend.bench.rss`: load the whole shipped zoo in this fresh process, run every model
once, and print one JSON line with the resident memory before and at the peak (from /proc)."""

from __future__ import annotations

import json
import os

import torch

from backend.bench.procs import peak_rss_mb


def main() -> None:
    torch_only = peak_rss_mb(os.getpid())  # the floor: an interpreter with torch imported
    from backend.jobs.execute import load_model
    from backend.models import list_models

    before = peak_rss_mb(os.getpid())
    loaded, params = [], 0
    for entry in list_models():
        path = entry.weights_path
        if entry.source != "zoo" or path is None or not path.exists():
            continue  # computed and Hub models are not shipped weights
        model = load_model(entry.name, "cpu").module
        if entry.task == "classification":  # a denoiser or the VLM takes more than one image
            with torch.no_grad():
                model(torch.rand(1, *entry.input_size))
        loaded.append(entry.name)
        params += sum(p.numel() for p in model.parameters())
    peak = peak_rss_mb(os.getpid())
    print(
        json.dumps(
            {
                "models": loaded,
                "parameters": params,
                "rss_torch_only_mb": torch_only,
                "rss_after_import_mb": before,
                "peak_rss_mb": peak,
            }
        )
    )


if __name__ == "__main__":
    main()
