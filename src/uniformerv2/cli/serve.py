"""``uniformerv2 serve --model M``: the HTTP service (JSON API, metrics, a web page) with cross-request batching."""
from __future__ import annotations

import sys

from ..errors import UserError
from .common import add_backend, add_device, add_dtype, add_preset, at_least


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="an HTTP service: predict, features, explain, metrics and a web page (cross-request batching)",
        description="Serve a model over HTTP: POST /v1/predict, /v1/features and /v1/explain (a video as a multipart upload or "
                    "the raw body), GET /v1/model, /healthz, /readyz, /metrics (Prometheus), /openapi.json, and a "
                    "web page at /. Views of concurrent requests share fixed-shape forward passes; decoding runs "
                    "in --workers processes. See docs/serving.md.")
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, metavar="PATH",
                   help="a pretrained name, a model or run directory, or a checkpoint file with --preset")
    add_preset(g, help="preset of a checkpoint file, e.g. k400_b16_8x224")
    add_device(g)
    add_dtype(g)
    add_backend(g)
    g = p.add_argument_group("network")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    g.add_argument("--port", type=at_least(0), default=8000, help="port (default: %(default)s)")
    g.add_argument("--api-key", metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on /v1 requests (default: the UNIFORMERV2_API_KEY "
                        "environment variable; unset: no key)")
    g.add_argument("--allow-paths", metavar="DIR",
                   help="let a JSON request name a video file under DIR ({\"path\": ...}); default: uploads only")
    g = p.add_argument_group("batching and limits")
    g.add_argument("--workers", type=at_least(1), default=None, metavar="N",
                   help="processes that decode uploads (default: chosen from the work: half the usable cores, at "
                        "least 1; the model's threads take the rest)")
    g.add_argument("--max-batch", type=at_least(1), metavar="V",
                   help="views per forward pass, shared by concurrent requests (default: the engine's choice "
                        "for the model's test views, as predict)")
    g.add_argument("--max-wait-ms", type=float, default=50.0, metavar="MS",
                   help="how long a partly filled pass may wait for more views while other videos are being "
                        "decoded (default: %(default)s; with nothing on its way it runs at once)")
    g.add_argument("--queue", type=at_least(1), default=64, metavar="N",
                   help="requests admitted at once; beyond, 503 with Retry-After (default: %(default)s)")
    g.add_argument("--max-upload-mb", type=float, default=100.0, metavar="MB",
                   help="largest upload; larger: 413 (default: %(default)s)")
    g.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds per request; longer: 504 and its work is dropped (default: %(default)s)")
    g.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="the HTTP server's log level (default: %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import uvicorn

        from ..serve import ServeConfig, create_app
    except ImportError as e:
        raise UserError(f"serve needs FastAPI and uvicorn: pip install 'uniformerv2[serve]' ({e})") from None
    from ..inference import VideoClassifier
    from ..inference.pipeline import usable_cores

    config = ServeConfig(workers=args.workers or max(1, usable_cores() // 2), max_batch=args.max_batch,
                         max_wait_ms=args.max_wait_ms, queue=args.queue, max_upload_mb=args.max_upload_mb,
                         timeout=args.timeout, allow_paths=args.allow_paths, api_key=args.api_key, name=args.model)
    clf = VideoClassifier.from_pretrained(args.model, preset=args.preset, device=args.device, dtype=args.dtype,
                                          backend=args.backend, quantize=args.quantize)
    app = create_app(clf, config)
    service = app.state.service
    print(f"serving {args.model} on http://{args.host}:{args.port} ({service.clf.device}, "
          f"{service.max_batch} views per pass, {service.config.workers} decode workers)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5)
    return 0
