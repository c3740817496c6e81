"""One Settings instance, read from the environment (prefix BIASLAB_).

The CLI builds it from its flags and the environment, then `use_settings` makes that very instance the
one every layer sees (API, embedded workers, `biaslab worker`, `run_lab`), so a flag such as
`--device cuda` is never dropped by a second read of the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "biaslab"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BIASLAB_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 7860
    # None: embedded queue (in-memory Redis stand-in + a worker thread). A URL: real Redis, external workers.
    redis_url: str | None = None
    # Worker threads inside `biaslab serve`. Default: 1 in embedded mode, 0 with Redis (use `biaslab worker`).
    workers: int | None = Field(default=None, ge=0, le=16)
    device: str = "cpu"  # where workers run jobs: "cpu", "cuda" or "cuda:N"
    queue_name: str = "biaslab"

    max_upload_bytes: int = 10 * 1024 * 1024  # checked before the image is parsed
    max_image_pixels: int = 40_000_000  # PIL decompression-bomb guard
    image_ttl_s: int = 24 * 3600

    job_timeout_s: int = 600
    # Dynamic batching (backend/jobs/batching.py): forward passes of up to this many concurrent jobs of a
    # worker process run as one, gathered for at most this long; 1 turns it off.
    batch_max_jobs: int = Field(default=8, ge=1, le=64)
    batch_wait_ms: float = Field(default=5.0, ge=0.0, le=200.0)
    result_ttl_s: int = 3600  # finished results expire after this
    failure_ttl_s: int = 24 * 3600
    # Worker liveness: a heartbeat key with this TTL; jobs of workers whose key expired are re-queued.
    heartbeat_ttl_s: int = 10
    sweep_interval_s: float = 2.0

    assets_dir: Path = REPO_ROOT / "frontend_assets"
    # What is computed from data and worth keeping between runs (the out-of-distribution reference);
    # safe to delete. Unwritable: everything still works, the computation is redone per process.
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    # Where `biaslab zoo train` writes weights; the shipped ones live inside the package.
    weights_dir: Path = Path(__file__).resolve().parent / "models" / "weights"
    # Base URL the Gradio UI uses to reach the API; empty means "same server".
    api_url: str = ""
    # Researchers' own timm checkpoints, "timm_name=path.safetensors" (or "timm_name" for the Hub);
    # from the environment as a JSON list, e.g. BIASLAB_TIMM_MODELS='["resnet18=r18.safetensors"]'.
    timm_models: list[str] = []
    # Python modules to import at start-up (API, workers, `biaslab run`): each may register labs, models
    # or datasets of its own, e.g. BIASLAB_PLUGINS='["mylab"]'.
    plugins: list[str] = []
    # Opt-in model sets beside the shapes zoo. "imagenet": timm's ImageNet-pretrained ConViT, DeiT, ResNet,
    # Mixer and adversarially trained Inception models (backend/models/imagenet.py), for real photos.
    # Their weights come only from the local Hugging Face cache (the Docker image downloads them at build
    # time); without them the models are listed as unavailable and everything else keeps working.
    model_set: Literal["", "imagenet"] = ""
    # Hugging Face cache the model set reads its weights from; None: huggingface_hub's default
    # (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub).
    hf_cache_dir: Path | None = None

    # --- Limits for a public deployment (see README, SECURITY) ---
    # Largest request body on every /api JSON endpoint; bigger bodies get 413 before they are parsed.
    max_json_bytes: int = Field(default=64 * 1024, ge=1024)
    # Uploads are stored downscaled to this longest side (no lab needs more than a few hundred pixels).
    max_image_side: int = Field(default=512, ge=32, le=4096)
    # Jobs waiting in the queue; past this a submission gets 429 with Retry-After (queued jobs are kept).
    max_queued_jobs: int = Field(default=200, ge=1)
    queue_full_retry_after_s: int = Field(default=10, ge=1)
    # Per-client token bucket on POST /api/jobs and /api/images: refill rate and burst; 0 turns it off.
    rate_limit_per_minute: float = Field(default=60.0, ge=0.0)
    rate_limit_burst: int = Field(default=20, ge=1)
    # Peers (addresses or networks) whose X-Forwarded-For names the real client: the mounted UI calls
    # the API over loopback; add a reverse proxy's network here. Their requests without it are not limited.
    trusted_proxies: list[str] = ["127.0.0.1", "::1"]
    # Redis timeouts of the API (fast 503 while Redis is down); workers wait for Redis instead.
    redis_connect_timeout_s: float = Field(default=0.5, gt=0.0)
    redis_socket_timeout_s: float = Field(default=0.5, gt=0.0)
    # After Redis comes back (or a sweeper starts), wait this long before re-queueing jobs of workers
    # whose heartbeat is missing: live workers re-assert their heartbeat first. None: heartbeat_ttl_s.
    requeue_grace_s: float | None = Field(default=None, ge=0.0)
    # Who may frame the UI (CSP frame-ancestors): the Hugging Face Space page embeds it.
    frame_ancestors: str = "'self' https://huggingface.co https://*.hf.space"

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        kind, _, index = value.partition(":")
        if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {value!r}")
        return value

    def check_device(self) -> None:
        """Fail at start, in one line, when the device asked for is not there (not in a job later)."""
        if not self.device.startswith("cuda"):
            return
        import torch

        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"--device {self.device}: this machine has no CUDA device that torch can use"
            )
        index = int(self.device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"--device {self.device}: only {torch.cuda.device_count()} CUDA device(s) on this machine"
            )

    def load_plugins(self) -> None:
        import importlib

        for name in self.plugins:
            importlib.import_module(name)


class DeviceUnavailable(RuntimeError):
    pass


_current: Settings | None = None


def use_settings(settings: Settings) -> Settings:
    """Make `settings` the process's one instance (the CLI calls this with the one it built)."""
    global _current
    _current = settings
    return settings


def get_settings() -> Settings:
    global _current
    if _current is None:
        _current = Settings()
    return _current
