"""Deployment exports of a model's forward pass, checked against eager PyTorch.

Exported graph: input ``video`` float32 (B, 3, T, S, S), normalised as in ``model.data_config`` (the test
pipeline of :mod:`uniformerv2.inference.views`, applied by the caller); outputs ``logits`` float32
(B, num_classes) and, in ONNX files, ``features`` float32 (B, C), the pre-head features (what the head's layer
norm and linear layer see; the ``onnxruntime`` backend of the engine reads both). B is dynamic; T and S are the model's. Labels, preset and preprocessing travel with the file:
ONNX metadata_props keys ``uniformerv2.labels`` / ``uniformerv2.data`` / ``uniformerv2.model`` (JSON), and the
same JSON as the ``uniformerv2.json`` extra file of a ``.pt2``.

Both checks run the exported file on fixed random inputs with batch sizes 1 and 3 (the export traces batch 2,
so this also exercises the dynamic batch) and report the largest absolute difference to eager fp32.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError

CHECK_BATCHES = (1, 3)
ONNX_PROTO_LIMIT = 2_000_000_000  # bytes; larger models need ONNX external data


@dataclass
class ExportReport:
    path: Path
    kind: str            # "onnx (dynamo)", "onnx (torchscript)", "torch.export"
    max_abs_diff: float | None
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff is None or self.max_abs_diff <= self.tolerance

    def summary(self) -> str:
        head = f"wrote {self.path} [{self.kind}, dynamic batch]"
        if self.max_abs_diff is None:
            return head + "; not verified"
        verdict = "OK" if self.ok else "FAILED"
        return (f"{head}; max abs diff vs eager fp32 on batches {'/'.join(map(str, CHECK_BATCHES))}: "
                f"{self.max_abs_diff:.3g} (tolerance {self.tolerance:g}) {verdict}")


class _Logits(nn.Module):
    """video (B, 3, T, S, S) -> logits (B, num_classes); a plain module for the exporters."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, video):
        return self.model(video)


class _LogitsAndFeatures(_Logits):
    """video (B, 3, T, S, S) -> (logits (B, num_classes), pre-head features (B, C)): what
    ``Engine.forward_views`` computes, in one graph."""

    def forward(self, video):
        f = self.model.forward_features(video)
        return self.model.head(f), f


def prepare(model, features: bool = False) -> nn.Module:
    """The model as exported: the reference computation (speed variants reverted), fp32, on the CPU;
    ``features``: with the pre-head features as a second output."""
    from ..accel import revert

    return (_LogitsAndFeatures if features else _Logits)(revert(model).float().cpu()).eval()


def example_input(model, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + batch)
    return torch.randn(batch, 3, model.num_frames, model.img_size, model.img_size, generator=g)


def metadata(model) -> dict[str, str]:
    return {"uniformerv2.model": json.dumps({"preset": model.preset, **model.cfg.to_dict()}),
            "uniformerv2.labels": json.dumps(model.labels),
            "uniformerv2.data": json.dumps(model.data_config.to_dict())}


def export_onnx(model, out, *, opset: int = 18, legacy: bool = False, check: bool = True,
                tolerance: float = 1e-4) -> ExportReport:
    """Write an ONNX file (dynamo exporter; ``legacy=True``: the TorchScript one) and verify it with
    onnxruntime."""
    from ..fileio import atomic_write

    out = Path(out)
    module = prepare(model, features=True)
    x = example_input(model, 2)
    big = sum(p.numel() * p.element_size() for p in module.parameters()) > ONNX_PROTO_LIMIT * 0.95
    names = ["logits", "features"]

    def write(path):
        with _quiet():
            if legacy:
                torch.onnx.export(module, (x,), path, input_names=["video"], output_names=names,
                                  dynamo=False, opset_version=opset,
                                  dynamic_axes={"video": {0: "batch"}, **{n: {0: "batch"} for n in names}})
            else:
                torch.onnx.export(module, (x,), path, input_names=["video"], output_names=names,
                                  dynamo=True, opset_version=opset, external_data=big, verbose=False,
                                  dynamic_shapes={"video": {0: torch.export.Dim("batch", min=1, max=4096)}})
        _add_metadata(path, metadata(model))

    if big:  # external data is named after the file, so it is written in place
        write(str(out))
    else:
        atomic_write(out, write)
    diff = None
    if check:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        diff = _max_diff(module, model, lambda v: sess.run(["logits"], {"video": v.numpy()})[0])
    return ExportReport(out, f"onnx ({'torchscript' if legacy else 'dynamo'}, opset {opset})", diff, tolerance)


def export_torch(model, out, *, check: bool = True, tolerance: float = 1e-4) -> ExportReport:
    """Write a ``torch.export`` program (``.pt2``; load with ``torch.export.load(path).module()``)."""
    from ..fileio import atomic_write

    out = Path(out)
    module = prepare(model)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet():
        program = torch.export.export(module, (example_input(model, 2),), dynamic_shapes={"video": {0: batch}})
    extra = {"uniformerv2.json": json.dumps(metadata(model))}
    atomic_write(out, lambda p: _save_program(p, program, extra))
    diff = None
    if check:
        loaded = torch.export.load(str(out)).module()
        with torch.inference_mode():
            diff = _max_diff(module, model, lambda v: loaded(v).numpy())
    return ExportReport(out, "torch.export", diff, tolerance)


def _save_program(path, program, extra) -> None:
    with open(path, "wb") as f:  # a file object: the temporary name does not end in .pt2
        torch.export.save(program, f, extra_files=extra)


def _max_diff(module, model, run) -> float:
    worst = 0.0
    with torch.inference_mode():
        for b in CHECK_BATCHES:
            x = example_input(model, b)
            got = np.asarray(run(x))
            want = module(x)
            want = (want[0] if isinstance(want, tuple) else want).numpy()   # the logits
            if got.shape != want.shape:
                raise UserError(f"exported model gives shape {got.shape} for batch {b}, eager {want.shape}")
            worst = max(worst, float(np.abs(got - want).max()))
    return worst


def _add_metadata(path, props: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(path, load_external_data=False)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)


@contextlib.contextmanager
def _quiet():
    """Keep the exporters' progress lines and deprecation chatter out of the CLI output."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            try:
                yield
            finally:
                for lg, lv in zip(loggers, levels):
                    lg.setLevel(lv)
