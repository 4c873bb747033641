"""``uniformerv2 bench serve``: a bounded load run of ``uniformerv2 serve`` on loopback, batching against
``--max-batch 1`` side by side in one run.

For each setting a server is started in its own process (``python -m uniformerv2 serve``), waited for on
``/readyz``, and loaded for ``seconds`` by ``clients`` concurrent asyncio clients (httpx) that post, in turn, good
videos (generated Kinetics-like clips), truncated ones (their first half), random bytes and oversize files (over
``--max-upload-mb``). Every answer's status is checked against the expected one (200, 422, 422, 413); the
figures: good videos answered per second, p50 / p99 latency of the good ones, requests by status, peak RSS of the
server process and of all its processes (decode workers included, each one's peak summed), the mean views per
forward pass (from ``/metrics``), and whether the server was the same process from start to end.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

KINDS = ("good", "truncated", "random", "oversize")
EXPECTED = {"good": 200, "truncated": 422, "random": 422, "oversize": 413}
MIX = ("good",) * 7 + ("truncated", "random", "oversize")       # the order each client cycles through
UPLOAD_MB = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_files(root: Path, good: int = 4, seconds: float = 4.0, size: tuple[int, int] = (340, 256)
               ) -> dict[str, list[bytes]]:
    """The request bodies of each kind (bytes), written once under ``root`` and reused: ``good`` generated
    Kinetics-like clips (``size``, 30 fps H.264, keyframes every 250 or 30 frames)."""
    from .videos import write_kinetics_like

    folder = root / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    goods = []
    for i in range(good):
        p = folder / f"v{i}_{seconds:g}s_{size[0]}x{size[1]}.mp4"
        if not p.exists():
            write_kinetics_like(p, gop=250 if i % 2 == 0 else 30, seconds=seconds, width=size[0], height=size[1],
                                seed=i)
        goods.append(p.read_bytes())
    rng = np.random.default_rng(0)
    return {"good": goods, "truncated": [g[: len(g) // 2] for g in goods],
            "random": [rng.bytes(200_000 + 50_000 * i) for i in range(good)],
            "oversize": [rng.bytes(int(UPLOAD_MB * 2**20 * 1.5))]}


def _peak_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


async def _load(url: str, bodies: dict, clients: int, seconds: float, headers: dict) -> list[tuple]:
    import httpx

    records: list[tuple] = []
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(limits=limits, timeout=120.0) as client:
        async def one_client(c: int) -> None:
            i = c
            while time.monotonic() < stop_at:
                kind = MIX[i % len(MIX)]
                files = bodies[kind]
                body = files[(i // len(MIX)) % len(files)]
                ctype = "video/mp4" if kind in ("good", "truncated") else "application/octet-stream"
                t = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers={"content-type": ctype, **headers})
                    status = r.status_code
                except httpx.HTTPError as e:
                    status = f"{type(e).__name__}"
                records.append((kind, status, time.perf_counter() - t))
                i += 1

        await asyncio.gather(*(one_client(c) for c in range(clients)))
    return records


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def run_setting(model: str, bodies: dict, *, clients: int, seconds: float, max_batch: int | None, workers: int,
                queue: int, extra: list[str] | None = None, verbose: bool = True) -> dict:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "uniformerv2", "serve", "--model", model, "--port", str(port),
           "--workers", str(workers), "--queue", str(queue), "--max-upload-mb", f"{UPLOAD_MB:g}",
           "--timeout", "120", *(["--max-batch", str(max_batch)] if max_batch else []), *(extra or [])]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited: {server.stderr.read().strip()[-500:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready in 120 s")
            time.sleep(0.2)
        info = httpx.get(f"{base}/v1/model", timeout=5).json()
        if verbose:
            print(f"  {clients} clients for {seconds:g} s, max batch {info['max_batch']} ...", file=sys.stderr)
        t0 = time.monotonic()
        records = asyncio.run(_load(f"{base}/v1/predict", bodies, clients, seconds, {}))
        wall = time.monotonic() - t0
        ready = httpx.get(f"{base}/readyz", timeout=10)
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        alive = server.poll() is None and ready.status_code == 200
        procs = [server.pid, *_descendants(server.pid)]
        peaks = {p: _peak_kib(p) for p in procs}
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    good = [s for k, st, s in records if k == "good" and st == 200]
    by_status: dict[str, int] = {}
    wrong = 0
    for kind, status, _ in records:
        key = f"{kind} {status}"
        by_status[key] = by_status.get(key, 0) + 1
        wrong += status != EXPECTED[kind]
    passes = _metric(metrics, "uniformerv2_forward_passes_total")
    views = _metric(metrics, "uniformerv2_views_total")
    return {"max_batch": info["max_batch"], "requests": len(records), "wrong_status": wrong, "by_status": by_status,
            "good_videos_per_s": len(good) / wall, "p50_ms": 1000 * float(np.percentile(good, 50)) if good else None,
            "p99_ms": 1000 * float(np.percentile(good, 99)) if good else None, "seconds": wall,
            "peak_rss_server_mib": peaks[server.pid] / 1024, "peak_rss_all_mib": sum(peaks.values()) / 1024,
            "processes": len(procs), "views_per_pass": views / passes if passes else None,
            "server_alive_same_process": alive, "model": info["name"], "preset": info["preset"],
            "views": info["views"], "decode_workers": workers}


def bench_serve(model: str | None = None, preset: str = "tiny_k400_8x64", *, clients: int = 32,
                seconds: float = 60.0, batches=(None, 1), workers: int = 1, queue: int | None = None,
                workdir=None, video_seconds: float = 4.0, video_size: tuple[int, int] = (340, 256),
                max_wait_ms: float | None = None, verbose: bool = True) -> dict:
    """The load run of every ``max_batch`` in ``batches`` (None: the server's default) on one model: ``model``
    (a directory or pretrained name), or ``preset`` with random weights saved under ``workdir``."""
    import tempfile

    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="uniformerv2-bench-serve-"))
    root.mkdir(parents=True, exist_ok=True)
    if model is None:
        from ..factory import create_model

        target = root / preset
        if not (target / "config.json").exists():
            create_model(preset).save_pretrained(target)
        model = str(target)
    bodies = make_files(root, seconds=video_seconds, size=video_size)
    rows = []
    for b in batches:
        if verbose:
            print(f"max batch {b or 'default'}:", file=sys.stderr)
        rows.append(run_setting(model, bodies, clients=clients, seconds=seconds, max_batch=b, workers=workers,
                                queue=queue or 2 * clients, verbose=verbose,
                                extra=["--max-wait-ms", f"{max_wait_ms:g}"] if max_wait_ms is not None else None))
    return {"clients": clients, "seconds": seconds, "workers": workers, "video_seconds": video_seconds,
            "video_size": list(video_size),
            "upload_limit_mb": UPLOAD_MB, "mix": {k: MIX.count(k) for k in KINDS}, "rows": rows,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}


def serve_table(r: dict) -> list[str]:
    out = ["| max batch (views/pass) | requests | wrong status | good videos/s | p50 ms | p99 ms | mean views "
           "per pass | peak RSS server MiB | peak RSS all processes MiB | same server process |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        out.append(f"| {row['max_batch']} | {row['requests']} | {row['wrong_status']} | "
                   f"{row['good_videos_per_s']:.2f} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | "
                   f"{row['views_per_pass']:.2f} | {row['peak_rss_server_mib']:.0f} | "
                   f"{row['peak_rss_all_mib']:.0f} ({row['processes']}) | "
                   f"{'yes' if row['server_alive_same_process'] else 'NO'} |")
    first = r["rows"][0]
    out += ["", "answers by kind and status: " + "; ".join(
        f"max batch {row['max_batch']}: " + ", ".join(f"{k} {n}" for k, n in sorted(row["by_status"].items()))
        for row in r["rows"])]
    if len(r["rows"]) > 1 and r["rows"][-1]["good_videos_per_s"]:
        out.append(f"batching / max batch {r['rows'][-1]['max_batch']}: "
                   f"{first['good_videos_per_s'] / r['rows'][-1]['good_videos_per_s']:.2f}x videos/s")
    return out
