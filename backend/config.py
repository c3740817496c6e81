"""One Settings instance, read from the environment (prefix BIASLAB_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BIASLAB_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 7860
    # None: embedded queue (in-memory Redis stand-in + a worker thread). A URL: real Redis, external workers.
    redis_url: str | None = None
    # Worker threads inside `biaslab serve`. Default: 1 in embedded mode, 0 with Redis (use `biaslab worker`).
    workers: int | None = Field(default=None, ge=0, le=16)
    device: str = "cpu"
    queue_name: str = "biaslab"

    max_upload_bytes: int = 10 * 1024 * 1024  # checked before the image is parsed
    max_image_pixels: int = 40_000_000  # PIL decompression-bomb guard
    image_ttl_s: int = 24 * 3600

    job_timeout_s: int = 600
    result_ttl_s: int = 3600  # finished results expire after this
    failure_ttl_s: int = 24 * 3600
    # Worker liveness: a heartbeat key with this TTL; jobs of workers whose key expired are re-queued.
    heartbeat_ttl_s: int = 10
    sweep_interval_s: float = 2.0

    assets_dir: Path = REPO_ROOT / "frontend_assets"
    # Where `biaslab zoo train` writes weights; the shipped ones live inside the package.
    weights_dir: Path = Path(__file__).resolve().parent / "models" / "weights"
    # Base URL the Gradio UI uses to reach the API; empty means "same server".
    api_url: str = ""
    # Researchers' own timm checkpoints, "timm_name=path.safetensors" (or "timm_name" for the Hub);
    # from the environment as a JSON list, e.g. BIASLAB_TIMM_MODELS='["resnet18=r18.safetensors"]'.
    timm_models: list[str] = []


@lru_cache
def get_settings() -> Settings:
    return Settings()
