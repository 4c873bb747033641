"""Prepared datasets: videos transcoded once for fast sparse reading (``uniformerv2 prepare``).

Training reads a few frames spread over each video (8 to 64 of a few hundred). In a file with a keyframe every
250 frames each of them costs a decode of everything before it in its group of pictures; in a prepared file
every sampled frame is a few frames from a keyframe, and the reader seeks there (``_pyav``'s sparse reader).

What ``transcode`` writes, per video:

- **the same frames**: frame ``i`` of the prepared file is frame ``i`` of the source as every reader of this
  package defines it (``video.py``: the i-th frame a decode from the first keyframe yields in presentation
  order, after the edit list), resized. The frame count is checked on the written file before it is renamed
  into place, and every frame keeps its presentation time (variable frame rate included), so sampling
  indices, frame rates and untrimmed windows in seconds mean what they meant for the source;
- **smaller frames**: the short side scaled to ``short_side`` (default 320, the size Kinetics is usually kept
  at), aspect kept, sides even (4:2:0), never enlarged; swscale's bicubic filter, which widens its support
  when it shrinks (antialiased), as ``ffmpeg -vf scale`` does;
- **a short keyframe interval**: ``keyframe_interval`` frames between keyframes (1 = every frame a keyframe,
  "all-intra"), with non-reference B-frames that the reader skips when they are not sampled;
- **high quality**: H.264 at a constant quality (``crf``), tuned for fidelity (``tune=psnr``: no
  psycho-visual trade-offs) and for decoding speed (``fastdecode``: CAVLC, no deblocking filter);
  ``lossless=True`` writes lossless RGB H.264 instead (large; the frames equal the source's exactly);
- **video only**: audio, subtitles and data streams are dropped; rotation metadata too (frames stay in stored
  orientation, as every reader here returns them).

The defaults come from ``bench prepare`` (docs/benchmarks.md): reading time of 8-, 16- and 32-frame sparse
clips, file size and PSNR for each keyframe interval.

``prepare_dataset`` runs ``transcode`` over a list file or a folder in worker processes, resumably: a prepared file
is written to a temporary name and renamed when complete, so a file that exists is finished and is skipped by
the next run. It writes the new list (the same lines, paths pointing at the prepared files) and a JSON report.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import UserError, VideoError
from ..fileio import atomic_write, atomic_write_text

DEFAULT_SHORT_SIDE = 320
PSNR_FRAMES = 8            # frames per checked file
PSNR_CAP = 100.0           # dB of a frame equal to its reference


@dataclass(frozen=True)
class PrepareSettings:
    """How ``transcode`` encodes (see the module docstring). ``short_side=None`` keeps the stored size."""
    short_side: int | None = DEFAULT_SHORT_SIDE
    keyframe_interval: int = 8
    bframes: int = 3            # consecutive B-frames, never used as references (skipped when not sampled)
    crf: float = 14.0
    preset: str = "veryfast"    # x264 speed preset (slower presets: smaller files, same quality)
    tune: str = "psnr,fastdecode"
    lossless: bool = False      # lossless RGB (libx264rgb, qp 0): exact frames, large files

    def __post_init__(self):
        if self.short_side is not None and (int(self.short_side) < 2 or int(self.short_side) % 2):
            raise UserError(f"short_side must be an even number of pixels (4:2:0 video), got {self.short_side}")
        if int(self.keyframe_interval) < 1:
            raise UserError(f"keyframe_interval must be >= 1 (1 = all-intra), got {self.keyframe_interval}")
        if not 0 <= int(self.bframes) <= 16:
            raise UserError(f"bframes must be between 0 and 16, got {self.bframes}")
        if not 0 <= float(self.crf) <= 51:
            raise UserError(f"crf must be between 0 and 51, got {self.crf}")

    def encoder_options(self) -> dict:
        gop = int(self.keyframe_interval)
        opts = {"preset": self.preset, "keyint_min": str(gop), "sc_threshold": "0", "threads": "1",
                "bframes": str(min(int(self.bframes), max(gop - 1, 0))), "b-pyramid": "none"}
        if self.lossless:
            opts["qp"] = "0"
        else:
            opts["crf"] = f"{float(self.crf):g}"
            if self.tune:
                opts["tune"] = self.tune
        return opts


def output_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) of the prepared frames: short side ``short_side`` when the source's is longer (aspect
    kept, the long side rounded to an even number), else the source size; odd sides lose one pixel."""
    w, h = int(width), int(height)
    if short_side is not None and min(w, h) > short_side:
        if w >= h:
            w, h = int(round(w * short_side / h / 2)) * 2, short_side
        else:
            w, h = short_side, int(round(h * short_side / w / 2)) * 2
    return max(w - w % 2, 2), max(h - h % 2, 2)


# ------------------------------------------------------------------------------------------------ one file
def transcode(source, output, settings: PrepareSettings = PrepareSettings(), *, psnr_frames: int = 0,
              timeout: float | None = None) -> dict:
    """Write the prepared version of ``source`` to ``output`` (atomically; see the module docstring).

    Returns ``{"frames", "width", "height", "source_width", "source_height", "bytes_in", "bytes_out",
    "seconds", "psnr"}``; ``psnr`` is the mean over ``psnr_frames`` evenly spaced frames of the PSNR (RGB, dB)
    of the prepared frame against the source frame resized to the same size (None when not measured). A source
    that cannot be read raises ``VideoError``.
    """
    from ._deadline import Deadline
    from ._pyav import build_table, open_container
    from .video import ReadRequest

    source, output = str(source), Path(output)
    if output.exists() and output.resolve() == Path(source).resolve():
        raise UserError(f"{source}: the output would overwrite the source")
    t0 = time.perf_counter()
    deadline = Deadline(timeout, source)
    with open_container(source, deadline) as container:
        table = build_table(container, source, ReadRequest(threads=1), deadline)
        stream = table.stream
        plan = {"index": stream.index, "first_key": table.first_key, "n": len(table.pts),
                "pts": list(table.pts) if table.trusted else None, "time_base": stream.time_base,
                "rate": stream.average_rate or stream.guessed_rate or stream.base_rate,
                "width": stream.codec_context.width, "height": stream.codec_context.height}
    if plan["n"] <= 0:
        raise VideoError(f"{source}: no decodable video frames")
    checked = ([] if psnr_frames <= 0 else
               sorted(set(np.linspace(0, plan["n"] - 1, min(psnr_frames, plan["n"])).round().astype(int).tolist())))
    refs: dict = {}

    def write(tmp):
        _encode(source, tmp, plan, settings, deadline, checked, refs)
        _check_output(source, tmp, plan["n"])

    atomic_write(output, write)
    psnr = None
    if checked:
        from .decode import read_frames

        got = read_frames(output, checked, timeout=timeout, threads=1)
        psnr = float(np.mean([frame_psnr(refs[i], g) for i, g in zip(checked, got)]))
    width, height = output_size(plan["width"], plan["height"], settings.short_side)
    return {"frames": plan["n"], "width": width, "height": height, "source_width": plan["width"],
            "source_height": plan["height"], "bytes_in": os.path.getsize(source),
            "bytes_out": output.stat().st_size, "seconds": round(time.perf_counter() - t0, 3), "psnr": psnr}


def _encode(source, tmp, plan: dict, settings: PrepareSettings, deadline, checked: list, refs: dict) -> None:
    import av

    from ._pyav import _decode_from_first_key, _reason, configure, open_container

    n = plan["n"]
    width, height = output_size(plan["width"], plan["height"], settings.short_side)
    rate = Fraction(plan["rate"]) if plan["rate"] else Fraction(30)
    if plan["pts"] is not None and plan["time_base"]:
        time_base, first = Fraction(plan["time_base"]), plan["pts"][0]
        stamp = lambda i: plan["pts"][i] - first  # noqa: E731  (the source's own presentation times)
    else:  # timestamps the reader does not trust (AVI ...): frame i at i / rate
        time_base, stamp = 1 / rate, (lambda i: i)
    pix_fmt = "rgb24" if settings.lossless else "yuv420p"
    wanted = set(checked)
    with open_container(source, deadline) as container, av.open(str(tmp), "w", format="mp4") as out:
        stream = container.streams[plan["index"]]
        configure(stream, 1)
        enc = out.add_stream("libx264rgb" if settings.lossless else "libx264", rate=rate)
        enc.width, enc.height, enc.pix_fmt = width, height, pix_fmt
        enc.codec_context.time_base = time_base
        enc.codec_context.gop_size = int(settings.keyframe_interval)
        _copy_colour(stream.codec_context, enc.codec_context, settings.lossless)
        enc.options = settings.encoder_options()
        i = -1
        try:
            for i, frame in enumerate(_decode_from_first_key(container, stream, plan["first_key"], deadline)):
                if i >= n:
                    raise VideoError(f"{source}: decodes to more frames than its {n} packets")
                if frame.is_corrupt:
                    raise VideoError(f"{source}: frame {i} is damaged (corrupt or truncated data)")
                deadline.check()
                same = frame.width == width and frame.height == height and frame.format.name == pix_fmt
                img = frame if same else frame.reformat(width=width, height=height, format=pix_fmt,
                                                        interpolation="BICUBIC")
                if i in wanted:
                    refs[i] = img.to_ndarray(format="rgb24")
                img.pts, img.time_base = stamp(i), time_base
                for packet in enc.encode(img):
                    out.mux(packet)
            for packet in enc.encode():
                out.mux(packet)
        except av.FFmpegError as e:
            raise VideoError(f"{source}: decoding or encoding failed at frame {i + 1} ({_reason(e)})") from e
    if i + 1 != n:
        raise VideoError(f"{source}: only {i + 1} of its {n} frames decode")


def _copy_colour(src, dst, lossless: bool) -> None:
    """Keep the colour description (matrix, range, primaries, transfer) so the prepared frames convert to the
    same RGB; lossless RGB output has no matrix."""
    if lossless:
        return
    for name in ("colorspace", "color_range", "color_primaries", "color_trc"):
        try:
            value = getattr(src, name)
            if value is not None:
                setattr(dst, name, value)
        except (AttributeError, TypeError, ValueError):  # pragma: no cover - older PyAV
            pass


def _check_output(source, tmp, n: int) -> None:
    from ._deadline import Deadline
    from ._pyav import build_table, open_container
    from .video import ReadRequest

    deadline = Deadline(None, tmp)
    with open_container(tmp, deadline) as container:
        written = len(build_table(container, tmp, ReadRequest(threads=1), deadline).pts)
    if written != n:
        raise VideoError(f"{source}: the prepared file holds {written} frames, the source {n}")


def frame_psnr(reference: np.ndarray, frame: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (capped at ``PSNR_CAP`` for equal ones)."""
    mse = float(np.mean((reference.astype(np.float64) - frame.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * np.log10(255.0 ** 2 / mse))


# ------------------------------------------------------------------------------------------------ a dataset
@dataclass
class _Entry:
    source: str                 # path as opened
    output: str                 # path of the prepared file, relative to the output folder
    line: str | None            # the list line with the path replaced (None: no list line)


def _relative(path: str, root: str = "") -> Path:
    """Where a source goes under the output folder: its path as written in the list (an absolute one relative
    to ``root`` when it lies there, else without its anchor), ``..`` made ``_``, suffix ``.mp4``."""
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.relative_to(Path(root).resolve()) if root else Path(*p.parts[1:])
        except ValueError:
            p = Path(*p.parts[1:])
    parts = ["_" if part == ".." else part for part in p.parts if part not in (".", "")]
    if not parts:
        raise UserError(f"{path}: not a file path")
    return Path(*parts).with_suffix(".mp4")


def list_entries(source, *, root: str = "", sep: str | None = None) -> tuple[list[_Entry], dict]:
    """The videos of a list file or a folder, with the line each one gets in the new list; and what to write
    besides (``{"list_name", "labels"}``)."""
    from .lists import FIELDS, _split, scan_class_folders
    from .video import find_videos

    source = Path(source)
    if source.is_dir():
        files, _ = find_videos(source)
        if not files:
            raise UserError(f"{source}: no videos found")
        classes = sorted(d.name for d in source.iterdir() if d.is_dir())
        labelled = classes and all(os.path.dirname(f) != str(source) for f in files)
        if labelled:
            items, classes = scan_class_folders(source)
            entries = []
            for it in items:
                rel = str(_relative(os.path.relpath(it.path, source)))
                entries.append(_Entry(it.path, rel, f"{rel},{it.label}"))
            return entries, {"list_name": "videos.csv", "labels": classes}
        return [_Entry(f, str(_relative(os.path.relpath(f, source))), None) for f in files], \
            {"list_name": None, "labels": None}
    if not source.is_file():
        raise UserError(f"{source}: no such list file or folder")
    entries = []
    for lineno, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = _split(text, sep, "auto")       # labels pass through as written (indices or class names)
        if len(fields) not in FIELDS.values():
            raise UserError(f"{source}:{lineno}: expected 'path label', 'dir num_frames label' or "
                            f"'path total_time start end label', got {text[:80]!r}")
        path = fields[0] if os.path.isabs(fields[0]) or not root else os.path.join(root, fields[0])
        if len(fields) == FIELDS["frames"]:
            entries.append(_Entry(path, "", None))   # a frame folder: reported, not transcoded
            continue
        rel = str(_relative(fields[0], root))
        sep_used = sep if sep is not None else ("," if "," in text else " ")
        entries.append(_Entry(path, rel, sep_used.join([rel, *fields[1:]])))
    return entries, {"list_name": source.name, "labels": None}


def _job(args) -> dict:
    source, output, settings, psnr_frames, timeout = args
    row = {"source": source, "output": output, "status": "failed", "reason": None}
    try:
        row.update(transcode(source, output, settings, psnr_frames=psnr_frames, timeout=timeout), status="done")
    except (VideoError, UserError, OSError) as e:
        row["reason"] = " ".join(str(e).split())
    return row


def prepare_dataset(source, out, *, root: str = "", sep: str | None = None, settings: PrepareSettings = PrepareSettings(),
            workers: int | None = None, psnr_sample: int = 16, timeout: float | None = 3600.0,
            progress: bool = False) -> dict:
    """Transcode every video of ``source`` (a list file or a folder) into ``out``; returns the report, also
    written to ``out/<list name>.prepare.json``.

    Outputs mirror the sources' paths (relative to ``root`` or as written in the list; a folder's tree) with the
    suffix ``.mp4``. Existing outputs are kept and counted as done. The new list (``out/<list file name>``; for a
    class-folder tree ``out/videos.csv`` and ``out/labels.txt``) has the lines of the prepared videos, in order,
    with the same labels and fields. ``psnr_sample`` files, evenly spread over the list, get their PSNR
    measured on ``PSNR_FRAMES`` frames each. Sources that fail are listed with the reason; they do not stop
    the run.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from .video import pool_context

    out = Path(out)
    entries, extra = list_entries(source, root=root, sep=sep)
    src_dir = Path(source) if Path(source).is_dir() else Path(root or ".")
    if out.resolve() == src_dir.resolve():
        raise UserError(f"--out {out} is the source folder: prepared files go to a folder of their own")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: list = [None] * len(entries)
    step = max(1, len(entries) // psnr_sample) if psnr_sample > 0 else 0
    jobs = []
    for k, e in enumerate(entries):
        target = out / e.output if e.output else None
        row = {"source": e.source, "output": str(target) if target else None, "status": "failed", "reason": None}
        if target is None:
            row["reason"] = f"{e.source}: a frame folder (already decoded frames; not transcoded)"
        elif Path(e.source).exists() and target.exists() and target.resolve() == Path(e.source).resolve():
            row["reason"] = f"{e.source}: the output would overwrite the source"
        elif target.exists():
            row.update(status="skipped", reason="already prepared", bytes_out=target.stat().st_size,
                       bytes_in=_size(e.source))
        else:
            psnr_frames = PSNR_FRAMES if step and k % step == 0 and k // step < psnr_sample else 0
            jobs.append((k, (e.source, str(target), settings, psnr_frames, timeout)))
            continue
        rows[k] = row
    bar = None
    if progress and jobs:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc="prepare", unit="video")
    if workers is None:
        workers = os.cpu_count() or 1
    if workers <= 1 or len(jobs) <= 1:
        for k, job in jobs:
            rows[k] = _job(job)
            bar is not None and bar.update()
    elif jobs:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=pool_context()) as pool:
            futures = {pool.submit(_job, job): k for k, job in jobs}
            for future in as_completed(futures):
                k = futures[future]
                try:
                    rows[k] = future.result()
                except Exception as e:  # a worker died (a decoder crash): report the file, keep going
                    rows[k] = {"source": entries[k].source, "output": str(out / entries[k].output),
                               "status": "failed", "reason": f"worker crashed ({type(e).__name__})"}
                bar is not None and bar.update()
    if bar is not None:
        bar.close()
    report = _report(source, out, settings, rows, time.perf_counter() - t0)
    list_name = extra["list_name"]
    if list_name:
        kept = [e.line for e, r in zip(entries, rows) if r["status"] in ("done", "skipped") and e.line]
        atomic_write_text(out / list_name, "".join(f"{line}\n" for line in kept))
        report["list"] = str(out / list_name)
    if extra["labels"]:
        atomic_write_text(out / "labels.txt", "".join(f"{name}\n" for name in extra["labels"]))
    stem = Path(list_name).stem if list_name else Path(source).name
    report["report"] = str(out / f"{stem}.prepare.json")
    atomic_write_text(out / f"{stem}.prepare.json", json.dumps(report, indent=1) + "\n")
    return report


def _size(path) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _report(source, out, settings: PrepareSettings, rows: list, seconds: float) -> dict:
    ok = [r for r in rows if r["status"] in ("done", "skipped")]
    psnrs = [r["psnr"] for r in rows if r.get("psnr") is not None]
    return {"source": str(source), "out": str(out), "settings": asdict(settings), "total": len(rows),
            "done": sum(r["status"] == "done" for r in rows), "skipped": sum(r["status"] == "skipped" for r in rows),
            "failed": sum(r["status"] == "failed" for r in rows),
            "bytes_before": sum(r.get("bytes_in") or 0 for r in ok), "bytes_after": sum(r.get("bytes_out") or 0 for r in ok),
            "seconds": round(seconds, 2),
            "psnr": {"mean": float(np.mean(psnrs)) if psnrs else None, "min": float(min(psnrs)) if psnrs else None,
                     "files": len(psnrs), "frames_per_file": PSNR_FRAMES},
            "files": rows}
