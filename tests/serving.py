"""A real ``uniformerv2 serve`` process on 127.0.0.1 for the tests (a free port, waited for on /readyz)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

SERVICE_MODULES = ("fastapi", "uvicorn", "python_multipart", "httpx")


def need(missing: list[str], what: str) -> None:
    """Skip with the reason, or fail when the ``CI`` environment variable is set (CI must run everything)."""
    if missing:
        reason = f"{what} needs {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (required in CI)", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def need_service() -> None:
    import importlib.util

    need([m for m in SERVICE_MODULES if importlib.util.find_spec(m) is None],
         "the service (pip install -e '.[serve]')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(model_dir, *options: str, env: dict | None = None, ready_s: float = 120.0):
    """Yields (base URL, the server's Popen); stops it (SIGINT, then kill) at the end."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "uniformerv2", "serve", "--model", str(model_dir), "--port", str(port), *options]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        yield base, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
