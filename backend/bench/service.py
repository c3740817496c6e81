"""Sections 3-5: the job service over HTTP against the same lab in-process, a class of students, and
start-up. Only loopback, only processes this run started (backend/bench/procs.py)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image

from backend.bench.procs import REPO, Processes, peak_rss_mb
from backend.bench.timing import median, percentile

# What a student's jobs ask for. Light settings of the two labs so a class of 100 fits the bench's
# time budget on 2 cores; the labs' defaults (64 probe images, 4 models, sanity checks) cost 10-100×.
STUDENT_JOBS: tuple[tuple[str, list[str], dict[str, Any]], ...] = (
    ("attention", ["convit-shapes"], {"probe_size": 0}),
    ("attribution", ["cnn-shapes"], {"ig_steps": 4, "references": 1, "randomisation": "none"}),
)
OVERHEAD_JOB: tuple[str, list[str], dict[str, Any]] = ("predict", ["cnn-shapes"], {})
# app/lab_page.py: the UI asks for a running job's state with `wait=UI_POLL_S` until it ends, and for a
# queued one's with `wait=UI_QUEUED_WAIT_S` (answered when it starts)
UI_POLL_S = 0.3
UI_QUEUED_WAIT_S = 2.0
LONG_WAIT_S = 30.0  # the API's longest wait: one request, answered when the job ends
DONE = ("finished", "failed", "cancelled")


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Client:
    """One browser's worth of API calls; `forwarded_for` makes the server see a distinct student."""

    base: str
    forwarded_for: str | None = None
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60))
    rejected_429: int = 0
    server_errors: int = 0

    def _headers(self) -> dict[str, str]:
        return {"X-Forwarded-For": self.forwarded_for} if self.forwarded_for else {}

    def _post(self, path: str, **kw: Any) -> httpx.Response:
        while True:  # a polite client: on 429 it waits as told and tries again
            r = self.http.post(f"{self.base}{path}", headers=self._headers(), **kw)
            if r.status_code == 429:
                self.rejected_429 += 1
                time.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            if r.status_code >= 500:
                self.server_errors += 1
            r.raise_for_status()
            return r

    def upload(self, data: bytes) -> str:
        r = self._post("/api/images", files={"file": ("image.png", data, "image/png")})
        return str(r.json()["image_id"])

    def submit(self, lab: str, models: list[str], image_id: str, params: dict[str, Any]) -> str:
        body = {"lab": lab, "models": models, "image_id": image_id, "params": params}
        return str(self._post("/api/jobs", json=body).json()["id"])

    def wait(self, job_id: str, wait_s: float = LONG_WAIT_S) -> tuple[dict[str, Any], int]:
        """The final job view and the size in bytes of that response, asking with `?wait=wait_s` (and,
        while the job is queued and `wait_s` is the UI's, as the UI asks: until it starts)."""
        queued = False
        while True:
            ui_queued = queued and wait_s < UI_QUEUED_WAIT_S
            params: dict[str, Any] = (
                {"wait": UI_QUEUED_WAIT_S, "until": "change"} if ui_queued else {"wait": wait_s}
            )
            r = self.http.get(f"{self.base}/api/jobs/{job_id}", params=params, headers=self._headers())
            if r.status_code >= 500:
                self.server_errors += 1
            r.raise_for_status()
            view = r.json()
            if view["status"] in DONE:
                return view, len(r.content)
            queued = view["status"] == "queued"

    def run(
        self, lab: str, models: list[str], image_id: str, params: dict[str, Any], wait_s: float = LONG_WAIT_S
    ) -> Any:
        job_id = self.submit(lab, models, image_id, params)
        view, size = self.wait(job_id, wait_s)
        if view["status"] != "finished":
            raise RuntimeError(f"{lab} job ended {view['status']}: {view.get('error')}")
        return view, size


# --- Section 3 ------------------------------------------------------------------------------------


def service_overhead(base: str, samples: int) -> dict[str, Any]:
    """POST /api/jobs -> finished result seen, against run_lab in this process, interleaved pairwise."""
    from backend.data.examples import load_example
    from backend.jobs.execute import run_lab

    lab, models, params = OVERHEAD_JOB
    data = png_bytes(load_example("shapes-circle"))
    image = Image.open(io.BytesIO(data)).convert("RGB")
    client = Client(base)
    image_id = client.upload(data)
    for _ in range(2):  # warm both sides: models, the OOD reference, first-call caches
        client.run(lab, models, image_id, params)
        run_lab(lab, models, image, params)
    http_s, local_s = [], []
    size = 0
    for i in range(samples):
        for side in ("http", "local") if i % 2 == 0 else ("local", "http"):
            start = time.perf_counter()
            if side == "http":
                _, size = client.run(lab, models, image_id, params)
                http_s.append(time.perf_counter() - start)
            else:
                run_lab(lab, models, image, params)
                local_s.append(time.perf_counter() - start)
    overhead = [h - loc for h, loc in zip(http_s, local_s, strict=True)]
    return {
        "lab": f"{lab} on {', '.join(models)}",
        "samples": samples,
        "http_p50_ms": 1000 * median(http_s),
        "inprocess_p50_ms": 1000 * median(local_s),
        "ratio": median(http_s) / median(local_s),
        "overhead_p50_ms": 1000 * median(overhead),
        "overhead_p99_ms": 1000 * percentile(overhead, 99),
        "response_bytes": size,
        "server_errors": client.server_errors,
    }


def payload_sizes(base: str) -> list[dict[str, Any]]:
    """Bytes of a finished job's response and of each figure, per lab at its default settings."""
    from backend.data.examples import load_example

    client = Client(base)
    image_id = client.upload(png_bytes(load_example("shapes-circle")))
    rows = []
    for lab, models, params in (OVERHEAD_JOB, *STUDENT_JOBS):
        view, size = client.run(lab, models, image_id, params)
        figs = view["result"]["figures"]
        rows.append(
            {
                "lab": lab,
                "models": models,
                "params": params,
                "response_bytes": size,
                "figures": len(figs),
                "figure_bytes": [_json_bytes(f) for f in figs],
            }
        )
    return rows


def _json_bytes(value: Any) -> int:
    """Size of `value` as the API sends it (Starlette: compact separators, UTF-8, no ASCII escapes)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


# --- Section 4 ------------------------------------------------------------------------------------


def student_images(n: int) -> list[bytes]:
    """A different test image of `shapes` for every student (seed 1: not the examples' seed)."""
    from backend.data.registry import load_dataset

    images = load_dataset("shapes", "test", n=n, seed=1).images
    return [png_bytes(Image.fromarray(img)) for img in images]


def class_load(base: str, students: int, images: list[bytes]) -> dict[str, Any]:
    """Every student starts at once: upload their image, run each STUDENT_JOBS lab, asking like the UI."""
    latencies: list[float] = []
    clients = [Client(base, forwarded_for=f"10.20.{i // 200}.{i % 200 + 1}") for i in range(students)]
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(students + 1)

    def student(i: int) -> None:
        c = clients[i]
        barrier.wait()
        try:
            image_id = c.upload(images[i])
            for lab, models, params in STUDENT_JOBS:
                start = time.perf_counter()
                c.run(lab, models, image_id, params, UI_POLL_S)
                with lock:
                    latencies.append(time.perf_counter() - start)
        except Exception as exc:  # counted and reported, never hidden
            with lock:
                failures.append(f"{type(exc).__name__}: {exc}"[:200])

    threads = [threading.Thread(target=student, args=(i,), daemon=True) for i in range(students)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    for c in clients:
        c.http.close()
    return {
        "students": students,
        "jobs_done": len(latencies),
        "wall_s": wall,
        "jobs_per_s": len(latencies) / wall,
        "latency_p50_s": median(latencies) if latencies else None,
        "latency_p95_s": percentile(latencies, 95) if latencies else None,
        "rejected_429": sum(c.rejected_429 for c in clients),
        "server_errors": sum(c.server_errors for c in clients),
        "failures": failures[:5],
        "failed_students": len(failures),
    }


def warm_workers(base: str, workers: int, images: list[bytes]) -> None:
    """Give every worker each student job once (models loaded, OOD reference fitted) before timing."""
    client = Client(base)
    image_id = client.upload(images[0])
    ids = [client.submit(lab, m, image_id, p) for lab, m, p in STUDENT_JOBS for _ in range(workers)]
    for job_id in ids:
        client.wait(job_id)
    client.http.close()


# --- Section 5 ------------------------------------------------------------------------------------


def timed_import_floor() -> float:
    """Seconds for a bare interpreter to import torch: the floor under any start-up of ours."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, cwd=REPO)
    return time.perf_counter() - start


def start_embedded(procs: Processes) -> tuple[str, subprocess.Popen[bytes], dict[str, float]]:
    """`biaslab serve` (embedded queue, 1 worker): seconds to healthy and to the first answered job."""
    from backend.data.examples import load_example

    start = time.perf_counter()
    url, proc = procs.serve(["--workers", "1"], "serve-embedded.log")
    procs.wait_healthy(url, proc, "serve-embedded.log", workers=1)
    healthy = time.perf_counter() - start
    client = Client(url)
    lab, models, params = OVERHEAD_JOB
    client.run(lab, models, client.upload(png_bytes(load_example("shapes-circle"))), params)
    first = time.perf_counter() - start
    client.http.close()
    return url, proc, {"healthy_s": healthy, "first_job_s": first}


def zoo_peak_rss() -> dict[str, Any]:
    """Peak RSS of a fresh process that loads every shipped model and runs each once (backend.bench.rss)."""
    out = subprocess.run(
        [sys.executable, "-m", "backend.bench.rss"], check=True, cwd=REPO, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def process_peaks(procs: Processes) -> dict[str, float]:
    """Peak RSS (MB) of every process still running, by name."""
    peaks = {procs.names[p.pid]: peak_rss_mb(p.pid) for p in procs.procs}
    return {k: v for k, v in peaks.items() if v is not None}
