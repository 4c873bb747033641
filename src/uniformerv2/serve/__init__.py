"""The HTTP service (``uniformerv2 serve``): cross-request batching of views on the inference engine, decoding
in worker processes, a JSON API and a web page. See ``serve.app`` and docs/serving.md.

    from uniformerv2.serve import create_app
    app = create_app("model_dir", max_batch=8)     # an ASGI app (FastAPI); needs pip install 'uniformerv2[serve]'
"""
from __future__ import annotations


def __getattr__(name):   # FastAPI loads on first use
    if name in ("create_app", "ServeConfig", "Service"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'uniformerv2.serve' has no attribute {name!r}")


__all__ = ["create_app", "ServeConfig", "Service"]
