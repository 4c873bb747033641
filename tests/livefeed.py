"""A live MPEG-TS feed over TCP on 127.0.0.1 for the live-recognition tests, written here with PyAV and sockets.

Like a camera, the feed has a clock of its own: frame ``i`` is due at ``start + i / fps`` whether or not anyone
watches, and shows its index as a barcode (``videogen.frame_image``, ``size`` x ``size``, in the centre of a
``width`` x ``size`` picture whose side bands are white: only a centre crop reads back the index). A client
that connects gets the frames from the next one due on, encoded as H.264 (a keyframe every ``gop`` frames, no
frame delay) in an MPEG-TS stream whose timestamps are ``i / fps``. ``drop(seconds)`` closes the connection and the port, and opens the
port again ``seconds`` later.
"""
from __future__ import annotations

import socket
import threading
import time
from fractions import Fraction

import numpy as np

from videogen import frame_image


def picture(index: int, size: int, width: int | None = None) -> np.ndarray:
    """Frame ``index``: its barcode in the centre, white bands on the sides."""
    width = width or size
    img = np.full((size, width, 3), 255, np.uint8)
    left = (width - size) // 2
    img[:, left:left + size] = frame_image(index, size, size)
    return img


class _SocketWriter:
    def __init__(self, conn):
        self.conn = conn

    def write(self, data) -> int:
        self.conn.sendall(data)
        return len(data)


class LiveFeed:
    def __init__(self, fps: int = 25, size: int = 96, width: int | None = None, gop: int = 5):
        self.fps, self.size, self.width, self.gop = fps, size, width or size, gop
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.start = time.monotonic()
        self.connections = 0
        self.sent: dict[int, float] = {}      # frame index -> monotonic time it was written
        self._stop = threading.Event()
        self._conn = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._hang_up()
        try:
            self.server.close()
        except OSError:
            pass
        self._thread.join(5)

    def drop(self, seconds: float) -> None:
        """Close the connection and stop listening; listen on the same port again after ``seconds``."""
        with self._lock:
            server, self.server = self.server, None
        server.close()
        self._hang_up()

        def reopen():
            time.sleep(seconds)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.port))
            s.listen()
            with self._lock:
                self.server = s
        threading.Thread(target=reopen, daemon=True).start()

    def _hang_up(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                server = self.server
            if server is None:
                time.sleep(0.02)
                continue
            server.settimeout(0.1)
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            self._conn = conn
            try:
                self._stream(conn)
            except OSError:
                pass           # the client went away or the connection was dropped
            finally:
                if self._conn is conn:
                    self._hang_up()

    def _stream(self, conn) -> None:
        import av

        out = av.open(_SocketWriter(conn), "w", format="mpegts", options={"flush_packets": "1"})
        try:
            stream = out.add_stream("libx264", rate=Fraction(self.fps))
            stream.width, stream.height = self.width, self.size
            stream.pix_fmt = "yuv420p"
            stream.codec_context.gop_size = self.gop
            stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "18",
                              "keyint_min": str(self.gop), "sc_threshold": "0"}
            i = int((time.monotonic() - self.start) * self.fps) + 1
            while not self._stop.is_set() and self._conn is conn:
                delay = self.start + i / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                frame = av.VideoFrame.from_ndarray(picture(i, self.size, self.width), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, self.fps)
                for packet in stream.encode(frame):
                    out.mux(packet)
                self.sent[i] = time.monotonic()
                i += 1
        finally:
            try:
                out.close()
            except Exception:  # noqa: BLE001 - the socket may be gone
                pass
