"""Runs over whole datasets: ``run_dataset`` -- sharded over processes, resumable, one output per input.

Under ``torchrun`` (any ``--nproc-per-node`` / ``--nnodes``; the process group is set up by the caller) rank
``r`` of ``N`` takes every ``N``-th input still to do, writes each result as soon as it is complete, and records
it in its own part of the run's records (``fileio.RunRecords``); rank 0 waits until every rank is through and
merges the parts into the final outputs, in input order:

  ``OUT/manifest.jsonl``     one line per input: ``{"index", "path", "status": "done" | "failed", "error"?,
                             "outputs"?, "attempts"}``
  ``OUT/predictions.json``   predict: one object per input, as ``predict --json`` prints
  ``OUT/predictions.csv``    predict: one row per (input, window, rank), as ``predict --csv``
  ``OUT/<name>.safetensors`` features: one file per input, written atomically as soon as it is computed
  eval                       each record holds the video's label and its aggregated scores (``engine.evaluate``
                             computes the metrics from them)

The output folder must be shared by every process (one machine, or a shared filesystem across nodes).
``resume=True`` skips the inputs that earlier sessions did (and those that failed, unless ``retry_failed``);
a killed run resumed ends with the same outputs as an uninterrupted one: the batch size is kept from the first
session and a video's numbers do not depend on which videos share its forward passes (``pipeline``).
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..fileio import RunRecords, atomic_write
from .engine import Failure, video_scores
from .pipeline import RunStats, as_input

TASKS = ("predict", "features", "eval")
MERGED = ("manifest.jsonl", "predictions.json", "predictions.csv")


@dataclass
class RunReport:
    """What a run did. On rank 0: ``stats`` over every process, ``records`` (the latest record of every input,
    in input order); on other ranks ``records`` is None and ``stats`` is their own."""
    stats: RunStats
    records: list[dict] | None
    failed: int
    resumed: int

    @property
    def results(self) -> list[dict] | None:
        """predict: one dict per input, in input order (``Prediction.to_dict()`` or a failure)."""
        if self.records is None:
            return None
        return [r.get("result") or {"path": r["path"], "ok": False, "error": r.get("error", "")}
                for r in self.records]


def dist_info() -> tuple[int, int, callable]:
    """(rank, world size, barrier) of the process group if one is set up, else (0, 1, no-op)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size(), dist.barrier
    return 0, 1, lambda: None


def run_dataset(clf, videos: list, out, *, task: str = "predict", names: list | None = None,
                views=None, window: float | None = None, stride: float | None = None, top_k: int | None = None,
                fmt: str | None = None, workers: int | None = None, batch_size: int | None = None,
                resume: bool = False, retry_failed: bool = False, overwrite: bool = False,
                signature: dict | None = None, progress: bool = False, metadata: dict | None = None,
                labels: list[int] | None = None, aggregate: str = "softmax", backend: str = "pyav",
                timeout: float | None = None) -> RunReport:
    """Predict, extract features or score (``task="eval"``, with ``labels``) every input of ``videos`` (paths
    or ``VideoInput``\\ s) into the folder ``out`` (see the module doc).

    names: features: the output stem of each video, relative to ``out`` (``inputs.output_names``; default:
    the file name). signature: what else decides the outputs (the model), checked when resuming. metadata:
    features: extra safetensors metadata. Every process calls this with the same list.

    Resuming takes the options the run was started with (views, windows, ``top_k``, ``fmt``) for those given
    as None; an option given with another value than the recorded one is refused (``RunRecords.open``)."""
    from .features import save_features

    if task not in TASKS:
        raise UserError(f"task must be one of {TASKS}, got {task!r}")
    if task == "eval" and (labels is None or len(labels) != len(videos)):
        raise UserError("task 'eval' needs one label per input")
    if retry_failed and not resume:
        raise UserError("retrying failed inputs is part of resuming: add --resume")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} is not a folder")
    inputs = [as_input(v) for v in videos]
    videos = [str(v.name) for v in inputs]
    names = [Path(n) for n in names] if names is not None else [Path(Path(v).stem) for v in videos]
    rank, world, barrier = dist_info()
    records = RunRecords(out, rank, world, barrier)
    recorded = records.recorded_signature() if resume else {}
    if recorded:   # what the user did not say again is what the run was started with
        views = views if views is not None else recorded.get("views")
        if window is None and stride is None:
            window, stride = recorded.get("window"), recorded.get("stride")
        top_k = top_k if top_k is not None else recorded.get("top_k")
        fmt = fmt if fmt is not None else recorded.get("format")
    top_k = 5 if top_k is None else top_k
    fmt = "safetensors" if fmt is None else fmt
    clips, crops = _views(clf, views)
    per_task = {"predict": {"top_k": top_k}, "features": {"format": fmt},
                "eval": {"aggregate": aggregate, "labels_sha256": _digest(videos, list(map(str, labels or [])))}}
    sig = {"task": task, "views": f"{clips}x{crops}", "window": window, "stride": stride,
           "inputs": len(videos), "inputs_sha256": _digest(videos, names), "dtype": str(clf.dtype).split(".")[-1],
           **per_task[task], **(signature or {})}
    proposed = clf.view_spec(views, window, stride, batch_size).group_views
    earlier = records.open(sig, resume=resume, overwrite=overwrite, settings={"batch_size": proposed},
                           keep=() if batch_size else ("batch_size",))
    if overwrite and rank == 0:
        for name in MERGED:
            (out / name).unlink(missing_ok=True)
    spec = clf.engine.spec(views, window, stride, records.settings["batch_size"], backend=backend, timeout=timeout)
    skip = {i for i, r in earlier.items() if r["status"] == "done" or not retry_failed}
    todo = [i for i in range(len(videos)) if i not in skip][rank::world]

    stats = RunStats()
    bar = _bar(len(todo), progress and rank == 0)
    model_name = clf.model.preset or clf.model.cfg.arch
    if task == "eval":
        results = ((i, r if isinstance(r, Failure) else video_scores(r, aggregate))
                   for i, r in clf.engine.run(inputs, todo, spec, workers=workers, stats=stats))
    else:
        results = clf.stream(inputs, todo, spec, task=task, top_k=top_k, workers=workers, stats=stats)
    for i, res in results:
        rec = {"index": i, "path": videos[i], **({"label": int(labels[i])} if task == "eval" else {})}
        if isinstance(res, Failure):
            rec.update(status="failed", error=res.error)
            bar.write(f"{videos[i]}: ERROR: {res.error}", file=sys.stderr)
        elif task == "features":
            meta = {"path": videos[i], "model": model_name, "views": f"{clips}x{crops}",
                    "dim": str(res.features.shape[-1]), **(metadata or {})}
            written = save_features(res, out / names[i], fmt, meta)
            rec.update(status="done", outputs=[p.relative_to(out).as_posix() for p in written],
                       shape=list(res.features.shape))
        elif task == "eval":
            rec.update(status="done", scores=encode_scores(res))
        else:
            rec.update(status="done", result=res.to_dict())
        records.append(rec)
        bar.update(1)
    bar.close()
    records.close(stats.to_dict())
    if rank != 0:
        return RunReport(stats, None, stats.failed, len(skip))

    total = RunStats.combine(records.wait_for_all())
    latest = records.latest()
    missing = [i for i in range(len(videos)) if i not in latest]
    if missing:  # cannot happen unless a process lost its records
        raise UserError(f"{out}: {len(missing)} inputs have no record (first: {videos[missing[0]]}); run again "
                        "with --resume")
    ordered = [latest[i] for i in range(len(videos))]
    _write_merged(out, ordered, task)
    failed = sum(r["status"] != "done" for r in ordered)
    return RunReport(total, ordered, failed, len(skip))


def encode_scores(scores) -> str:
    """float32 scores as base64 (exact round trip, 4 bytes a class)."""
    return base64.b64encode(np.asarray(scores, dtype="<f4").tobytes()).decode()


def decode_scores(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").copy()


def _views(clf, views) -> tuple[int, int]:
    from .views import parse_views

    return parse_views(views, clf.default_views)


def _digest(videos: list[str], names: list) -> str:
    h = hashlib.sha256()
    for v, n in zip(videos, names):
        h.update(f"{v}\0{n.as_posix() if isinstance(n, Path) else n}\n".encode())
    return h.hexdigest()


def _bar(total: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="video", file=sys.stderr, disable=not show or total < 2, dynamic_ncols=True)


def _write_merged(out: Path, records: list[dict], task: str) -> None:
    lean = []
    for r in records:
        keep = {k: r[k] for k in ("index", "path", "status", "error", "label", "outputs", "shape", "attempts")
                if k in r}
        lean.append(json.dumps(keep) + "\n")
    atomic_write(out / "manifest.jsonl", lambda p: Path(p).write_text("".join(lean)))
    if task != "predict":
        return
    results = [r.get("result") or {"path": r["path"], "ok": False, "error": r.get("error", "")} for r in records]
    text = json.dumps(results, indent=2) + "\n"
    atomic_write(out / "predictions.json", lambda p: Path(p).write_text(text))
    csv_text = predictions_csv(results)
    atomic_write(out / "predictions.csv", lambda p: Path(p).write_text(csv_text, newline=""))


def predictions_csv(results: list[dict]) -> str:
    """One row per (input, window, rank): ``path,ok,start,end,rank,label,index,prob,error`` (``start``/``end``
    empty for the video-level rows)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "ok", "start", "end", "rank", "label", "index", "prob", "error"])
    for r in results:
        if not r["ok"]:
            w.writerow([r["path"], 0, "", "", "", "", "", "", r["error"]])
            continue
        rows = [("", "", r["top_k"])] + [(e["start"], e["end"], e["top_k"]) for e in r.get("timeline") or []]
        for start, end, scores in rows:
            for k, s in enumerate(scores, 1):
                w.writerow([r["path"], 1, start, end, k, s["label"], s["index"], f"{s['prob']:.6f}", ""])
    return buf.getvalue()
