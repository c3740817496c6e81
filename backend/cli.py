"""`biaslab`: serve the dashboard, run workers, run a lab headless, manage the model zoo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any


class StartError(Exception):
    """A setting that cannot work here (no CUDA, a bad plugin): one line on stderr, exit 2."""


def _settings(**overrides: Any):  # type: ignore[no-untyped-def]
    """Build the process's one Settings from flags and environment, check it, and make it current."""
    from pydantic import ValidationError

    from backend.config import DeviceUnavailable, Settings, use_settings

    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise StartError(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None
    try:
        settings.check_device()
        settings.load_plugins()
    except DeviceUnavailable as exc:
        raise StartError(str(exc)) from None
    except ImportError as exc:
        raise StartError(f"cannot import plugin: {exc}") from None
    return use_settings(settings)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from backend.main import create_app

    settings = _settings(
        host=args.host,
        port=args.port,
        redis_url=args.redis,
        workers=args.workers,
        device=args.device,
        timm_models=args.timm,
    )
    mode = f"Redis at {settings.redis_url}" if settings.redis_url else "embedded queue"
    print(f"Inductive Bias Lab on http://{settings.host}:{settings.port}  (API /api, docs /docs, {mode})")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from backend.jobs.worker import run_worker_process

    settings = _settings(redis_url=args.redis, device=args.device, timm_models=args.timm)
    if not settings.redis_url:
        print("biaslab worker needs --redis URL (or BIASLAB_REDIS_URL)", file=sys.stderr)
        return 2
    run_worker_process(settings, burst=args.burst, threads=args.threads)
    return 0


def _parse_param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param takes key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)  # numbers, booleans, lists
    except json.JSONDecodeError:
        value = raw
    return key, value


def cmd_run(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm import tqdm

    from backend.jobs.execute import run_lab
    from backend.labs import UnknownLab, get_lab
    from backend.models import ModelNotAvailable, UnknownModel, register_timm_specs
    from backend.models.imagenet import register_model_set

    settings = _settings(device=args.device)
    try:
        lab = get_lab(args.lab)
    except UnknownLab as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    models = args.model or list(lab.default_models)
    specs = list(args.timm or [])
    if args.weights:
        if len(models) != 1:
            print("--weights goes with exactly one --model (a timm architecture name)", file=sys.stderr)
            return 2
        specs.append(f"{models[0]}={args.weights}")
    try:
        register_timm_specs(specs)
        register_model_set(settings.model_set)
    except (UnknownModel, ModelNotAvailable) as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    image = None
    if args.image:
        try:
            image = Image.open(args.image).convert("RGB")
        except (OSError, Image.DecompressionBombError) as exc:  # missing file, not an image, too large
            print(f"cannot read --image {args.image!r}: {exc}", file=sys.stderr)
            return 2
    elif lab.needs_image:
        from backend.data.examples import list_examples, load_example

        first = list_examples()[0].name
        print(f"no --image given; using example {first!r}", file=sys.stderr)
        image = load_example(first)
    params = dict(args.param or [])
    bar = tqdm(total=100, desc=lab.name, unit="%")

    def progress(fraction: float, message: str = "") -> None:
        bar.n = int(fraction * 100)
        bar.set_postfix_str(message)
        bar.refresh()

    def publish(partial: dict[str, Any]) -> None:  # partial results: show their text as they arrive
        bar.write(f"[{partial['step']}] {partial.get('text') or ''}".rstrip(), file=sys.stderr)

    try:
        result = run_lab(
            lab.name,
            models,
            image,
            params,
            text=args.text,
            settings=settings,
            progress=progress,
            publish=publish,
        )
    except (UnknownModel, ModelNotAvailable) as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    except ValueError as exc:  # the lab cannot do this for these inputs; it says why
        print(f"{lab.name}: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = write_outputs(out, lab.name, result)
    for path in written:
        print(path)
    if result.get("text"):
        print(result["text"])
    return 0


def write_outputs(out: Path, lab_name: str, result: dict[str, Any]) -> list[Path]:
    """Standalone Plotly HTML per figure (first one embeds plotly.js, so it opens offline) + metrics JSON."""
    import plotly.graph_objects as go

    written = []
    for i, fig in enumerate(result["figures"]):
        path = out / f"{lab_name}-{i}.html"
        go.Figure(fig).write_html(path, include_plotlyjs=True, full_html=True)
        written.append(path)
    metrics = out / f"{lab_name}-metrics.json"
    metrics.write_text(json.dumps({"metrics": result["metrics"], "text": result.get("text")}, indent=2))
    written.append(metrics)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biaslab", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the API + dashboard (embedded queue unless --redis)")
    serve.add_argument("--host", default=None, help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default 7860")
    serve.add_argument(
        "--redis", default=None, metavar="URL", help="use a Redis server, e.g. redis://host:6379/0"
    )
    serve.add_argument("--workers", type=int, default=None, help="in-process worker threads (default 1)")
    serve.add_argument("--device", default=None, help="cpu or cuda for in-process workers")
    serve.add_argument(
        "--timm",
        action="append",
        metavar="NAME[=PATH]",
        help="add a timm model with pretrained weights from PATH (.safetensors/.pth) or the Hub (repeatable)",
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run one model worker against a Redis queue")
    worker.add_argument("--redis", default=None, metavar="URL", help="Redis URL (or BIASLAB_REDIS_URL)")
    worker.add_argument("--device", default=None, help="cpu (default), cuda or cuda:N")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument(
        "--threads",
        type=int,
        default=1,
        choices=range(1, 17),
        metavar="N",
        help="workers in this process sharing its loaded models; their concurrent jobs share batched "
        "forward passes (default 1)",
    )
    worker.add_argument(
        "--timm",
        action="append",
        metavar="NAME[=PATH]",
        help="add a timm model with pretrained weights from PATH (.safetensors/.pth) or the Hub (repeatable)",
    )
    worker.set_defaults(func=cmd_worker)

    run = sub.add_parser("run", help="run a lab headless and write figures (HTML) and metrics (JSON)")
    run.add_argument("lab", help="lab name, see `biaslab labs`")
    run.add_argument("--model", action="append", help="model name (repeat for several); default: the lab's")
    run.add_argument("--image", help="image file (PNG/JPEG/WEBP); default: the first example")
    run.add_argument(
        "--param", action="append", type=_parse_param, help="lab parameter key=value (repeatable)"
    )
    run.add_argument(
        "--weights", metavar="PATH", help="pretrained weights for the one --model, a timm architecture name"
    )
    run.add_argument(
        "--timm",
        action="append",
        metavar="NAME[=PATH]",
        help="add a timm model with pretrained weights from PATH (.safetensors/.pth) or the Hub (repeatable)",
    )
    run.add_argument("--text", help="the text input of labs that take one (a question)")
    run.add_argument("--device", default=None, help="cpu (default), cuda or cuda:N")
    run.add_argument("--out", required=True, help="output directory")
    run.set_defaults(func=cmd_run)

    labs = sub.add_parser("labs", help="list the labs and their parameters")
    labs.set_defaults(func=cmd_labs)

    bench = sub.add_parser("bench", help="benchmark labs, GradCAM, the job service and a class load")
    bench.add_argument("--quick", action="store_true", help="fewer repeats and students (under 2 minutes)")
    bench.add_argument("--out", default="bench", help="directory for results.json and RESULTS.md")
    bench.add_argument("--iterations", type=int, default=None, help="timed repeats per side (override)")
    bench.add_argument("--students", type=_int_list, default=None, help="class sizes, e.g. 30,100")
    bench.add_argument("--workers", type=_int_list, default=None, help="worker counts, e.g. 1,2,4")
    bench.add_argument(
        "--threads", type=int, default=None, help="torch threads per process (default: torch's own choice)"
    )
    bench.set_defaults(func=cmd_bench)

    try:
        from backend.train.commands import register_cli
    except ImportError:
        pass
    else:
        register_cli(sub)
    return parser


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers of at least 1, got {text!r}")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    import signal

    from backend.bench import BenchConfig, run_bench

    if args.iterations is not None and args.iterations < 1:
        print("--iterations must be at least 1", file=sys.stderr)
        return 2
    # SIGTERM (a timeout, Ctrl-C in make) unwinds, so the servers and workers it started are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    _settings()
    config = BenchConfig.make(args.quick, args.iterations, args.students, args.workers, args.threads)
    out = Path(args.out)
    run_bench(config, out, log=lambda msg: print(msg, file=sys.stderr))
    print(out / "RESULTS.md")
    return 0


def cmd_labs(args: argparse.Namespace) -> int:
    from backend.labs import list_labs

    for lab in list_labs():
        props = lab.Params.model_json_schema().get("properties", {})
        params = ", ".join(f"{k}={v.get('default')}" for k, v in props.items())
        print(f"{lab.name:18s} {lab.title}: {lab.description}\n{'':18s} params: {params or '-'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from backend.models import ModelNotAvailable, UnknownModel

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        code: int = args.func(args)
    except (UnknownModel, ModelNotAvailable) as exc:  # e.g. a bad --timm NAME=PATH for serve or worker
        print(exc.args[0], file=sys.stderr)
        return 2
    except StartError as exc:
        print(f"biaslab {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
