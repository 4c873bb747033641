"""A real HTTP file server on 127.0.0.1 for download tests (stdlib ``http.server`` in a thread).

It serves a folder (laid out ``HOST/PATH`` when it stands in for a mirror), honours ``Range: bytes=N-``
(206 / 416), records every request, and can misbehave on purpose: drop the connection after some bytes
(``drop_after[path] = [n1, n2, ...]``, one number per coming request), ignore ``Range`` (``ranges=False``)
or send slowly (``delay`` seconds per 64 KiB).
"""
from __future__ import annotations

import http.server
import socket
import threading
import time
import urllib.parse
from pathlib import Path

CHUNK = 64 * 1024


class FileServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.drop_after: dict[str, list[int]] = {}
        self.ranges = True
        self.delay = 0.0
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server._serve(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def gets(self, path: str) -> list[str | None]:
        """The Range headers of the GET requests made for ``path`` so far (None = whole file)."""
        with self._lock:
            return [r for m, p, r in self.requests if m == "GET" and p == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _serve(self, h):
        path = urllib.parse.unquote(urllib.parse.urlsplit(h.path).path)
        rng = h.headers.get("Range")
        with self._lock:
            self.requests.append(("GET", path, rng))
            drops = self.drop_after.get(path)
            drop = drops.pop(0) if drops else None
        f = (self.root / path.lstrip("/")).resolve()
        if self.root.resolve() not in f.parents or not f.is_file():
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data = f.read_bytes()
        start = 0
        if rng and self.ranges and rng.startswith("bytes="):
            start = int(rng[len("bytes="):].split("-")[0])
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("Accept-Ranges", "bytes" if self.ranges else "none")
        h.end_headers()
        body = data[start:]
        limit = len(body) if drop is None else min(drop, len(body))
        try:
            for i in range(0, limit, CHUNK):
                h.wfile.write(body[i:min(i + CHUNK, limit)])
                h.wfile.flush()
                if self.delay:
                    time.sleep(self.delay)
        except (BrokenPipeError, ConnectionResetError):
            return
        if drop is not None:  # hang up in the middle of the body
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
