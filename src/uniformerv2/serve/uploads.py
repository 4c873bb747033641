"""A request's video: streamed into a private temporary file (or, with ``--allow-paths``, a path under a folder).

A request carries its video one of three ways:
  multipart/form-data          a file field (any name; the first file) plus optional text fields (the options)
  a raw body                   Content-Type ``video/*`` or ``application/octet-stream`` (or none)
  application/json             ``{"path": "clips/a.mp4", ...options}``: a file under the ``--allow-paths`` folder
Anything else is 415. The body is counted as it arrives: over the limit is 413 (at once when Content-Length
says so). Uploads are written to a file that only this user can read, in a folder made for the service, and
the caller deletes it when the request ends, whatever happened (``Upload.close``).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

VIDEO_TYPES = ("application/octet-stream",)
DRAIN_LIMIT = 64 << 20      # bytes read and dropped after an oversize body so that the client gets its 413
MAX_FIELD = 4096            # bytes of a text field of a form


class HTTPProblem(Exception):
    """A request the service answers with ``status`` and a one-line ``reason``."""

    def __init__(self, status: int, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, " ".join(str(reason).split()), headers or {}


@dataclass
class Upload:
    """The video of a request: ``path`` to read, ``name`` to report (the upload's file name, or the path as
    the client gave it), ``options`` from the form or the JSON body; ``temporary``: delete ``path`` at the end."""
    path: str
    name: str | None
    options: dict = field(default_factory=dict)
    temporary: bool = True

    def close(self) -> None:
        if self.temporary:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _suffix(filename: str | None) -> str:
    suffix = Path(filename or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def _new_file(folder: str, filename: str | None):
    import tempfile

    fd, path = tempfile.mkstemp(prefix="upload-", suffix=_suffix(filename), dir=folder)   # mode 0600
    return os.fdopen(fd, "wb"), path


def _media(value: str | None) -> tuple[str, dict]:
    ctype, params = parse_options_header(value or "")
    ctype = ctype.decode("latin-1").lower() if isinstance(ctype, bytes) else str(ctype).lower()
    params = {(k.decode("latin-1") if isinstance(k, bytes) else k).lower():
              (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in params.items()}
    return ctype, params


def _is_video_type(ctype: str) -> bool:
    return not ctype or ctype.startswith("video/") or ctype in VIDEO_TYPES


async def _drain(chunks, already: int) -> None:
    """Read and drop the rest of an oversize body (up to ``DRAIN_LIMIT``), so the client reads its 413."""
    got = already
    async for piece in chunks:
        got += len(piece)
        if got > DRAIN_LIMIT:
            return


def _too_large(limit: int) -> HTTPProblem:
    return HTTPProblem(413, f"the upload is larger than the limit of {limit / 2**20:g} MB (--max-upload-mb)")


async def receive_video(request, folder: str, max_bytes: int, allow_paths: str | None) -> Upload:
    """The request's video (see the module doc); raises ``HTTPProblem`` (413, 415, 422, 403, 404)."""
    ctype, params = _media(request.headers.get("content-type"))
    length = request.headers.get("content-length")
    if ctype == "application/json":
        return await _json_path(request, allow_paths)
    if not (ctype == "multipart/form-data" or _is_video_type(ctype)):
        raise HTTPProblem(415, f"unsupported media type {ctype!r}: send a video as multipart/form-data or as the "
                               "body with Content-Type video/* or application/octet-stream")
    if length is not None and length.isdigit() and int(length) > max_bytes + (1 << 16 if ctype.startswith(
            "multipart/") else 0):
        await _drain(request.stream(), 0)
        raise _too_large(max_bytes)
    if ctype == "multipart/form-data":
        return await _multipart(request, params.get("boundary"), folder, max_bytes)
    out, path = _new_file(folder, None)
    upload, size, chunks = Upload(path, None), 0, request.stream()
    try:
        with out:
            async for piece in chunks:
                size += len(piece)
                if size > max_bytes:
                    raise _too_large(max_bytes)
                out.write(piece)
        if size == 0:
            raise HTTPProblem(422, "the request holds no video (an empty body)")
    except BaseException as e:
        upload.close()
        if isinstance(e, HTTPProblem) and e.status == 413:
            await _drain(chunks, size)
        raise
    return upload


async def _json_path(request, allow_paths: str | None) -> Upload:
    if allow_paths is None:
        raise HTTPProblem(403, "this server does not read files named in a request (start it with --allow-paths "
                               "DIR to allow files under DIR)")
    body = b""
    async for piece in request.stream():
        body += piece
        if len(body) > 1 << 16:
            raise HTTPProblem(413, "a JSON request body is limited to 64 kB")
    try:
        data = json.loads(body or b"{}")
    except ValueError as e:
        raise HTTPProblem(422, f"the JSON body does not parse: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("path"), str) or not data["path"]:
        raise HTTPProblem(422, 'a JSON body needs "path": a video file under the allowed folder')
    root = Path(allow_paths).resolve()
    target = (root / data["path"]).resolve()
    if target != root and root not in target.parents:
        raise HTTPProblem(403, f"{data['path']}: not under the folder this server may read")
    if not target.is_file():
        raise HTTPProblem(404, f"{data['path']}: no such file under the allowed folder")
    options = {k: v for k, v in data.items() if k != "path"}
    return Upload(str(target), data["path"], options, temporary=False)


async def _multipart(request, boundary: str | None, folder: str, max_bytes: int) -> Upload:
    if not boundary:
        raise HTTPProblem(422, "a multipart/form-data body without a boundary")
    state = {"headers": {}, "field": b"", "value": b"", "kind": None, "name": None, "size": 0, "bad": None}
    options: dict = {}
    files: list[Upload] = []
    sink = {"out": None}

    def on_part_begin():
        state["headers"], state["kind"], state["name"], state["value"] = {}, None, None, b""

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"].decode("latin-1")
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        _, disp = _media(state["headers"].get("content-disposition"))
        ptype, _ = _media(state["headers"].get("content-type"))
        state["name"] = disp.get("name")
        if "filename" in disp and not files:
            if not _is_video_type(ptype):
                state["bad"] = HTTPProblem(415, f"unsupported media type {ptype!r} of the uploaded file: send a "
                                                "video (video/* or application/octet-stream)")
                state["kind"] = "skip"
                return
            out, path = _new_file(folder, disp.get("filename"))
            files.append(Upload(path, disp.get("filename") or None))
            sink["out"], state["kind"] = out, "file"
        elif "filename" in disp:
            state["kind"] = "skip"       # a second file: ignored
        else:
            state["kind"], state["value"] = "field", b""

    def on_part_data(data, start, end):
        if state["kind"] == "file":
            state["size"] += end - start
            if state["size"] > max_bytes:
                state["bad"] = state["bad"] or _too_large(max_bytes)
                state["kind"] = "skip"
                return
            sink["out"].write(data[start:end])
        elif state["kind"] == "field":
            state["value"] += data[start:end]
            if len(state["value"]) > MAX_FIELD:
                state["bad"] = state["bad"] or HTTPProblem(413, f"a form field is limited to {MAX_FIELD} bytes")
                state["kind"] = "skip"

    def on_part_end():
        if state["kind"] == "file" and sink["out"] is not None:
            sink["out"].close()
            sink["out"] = None
        elif state["kind"] == "field" and state["name"]:
            options[state["name"]] = state["value"].decode("utf-8", "replace")
        state["kind"], state["value"] = None, b""

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    chunks = request.stream()
    try:
        try:
            async for piece in chunks:
                parser.write(piece)
                if state["bad"] is not None and state["bad"].status == 413:
                    await _drain(chunks, state["size"])
                    break
            else:
                parser.finalize()
        except HTTPProblem:
            raise
        except Exception as e:  # noqa: BLE001 - the multipart parser's complaint, as the reason
            raise HTTPProblem(422, f"the multipart body does not parse: {e}") from None
        finally:
            if sink["out"] is not None:
                sink["out"].close()
        if state["bad"] is not None:
            raise state["bad"]
        if not files:
            raise HTTPProblem(422, "the form holds no video file (send it as a file field, e.g. 'video')")
        if state["size"] == 0:
            raise HTTPProblem(422, "the uploaded video is empty")
    except BaseException:
        for f in files:
            f.close()
        raise
    files[0].options = options
    return files[0]
