"""The int8 variants ONNX Runtime offers for the engine's ONNX file, side by side: accuracy on a labelled list and
batch-1 latency on this CPU; optionally the same files under OpenVINO.

    python benchmarks/cpu_quantization.py --model demo-output/uniformerv2/final --list demo-output/data/test.csv \\
        --root demo-output/data --calib demo-output/data/train.csv          # accuracy of each variant
    python benchmarks/cpu_quantization.py --preset k400_b16_8x224 --time --iters 3 [--openvino]

Variants (all from the engine's cached fp32 file; the classification head stays fp32 in each):

- ``dynamic``: what ``--quantize int8`` ships (``runtime.quantize_int8``): int8 weights of the linear layers, one
  scale per tensor, activations quantized on the fly;
- ``dynamic-pc``: the same with one scale per output channel;
- ``static``: static (calibrated) int8, QDQ format, the linear layers, per-channel weights, uint8 activations
  with ranges from calibration clips (``--calib``: videos evenly spaced over a labelled list, the model's views;
  default: random views);
- ``static-all``: ``static`` plus the attention products and the convolutions (patch embedding, DPE);
- ``static-qop``: ``static`` in the QOperator format (QLinearMatMul) instead of QDQ.

Timing: each file under ONNX Runtime (the engine's session options: the torch threads, sequential) and, with
``--openvino``, under OpenVINO's CPU plugin (latency hint, one stream; the fp32 file with the fp32 and bf16
precision hints, the static files with fp32; not the dynamic ones, whose MatMulInteger graphs ran several times
slower there; OpenVINO is not a dependency: put it on ``sys.path``), in alternating rounds, median; the preset's perturbed weights are
those of ``cpu_vs_official.py`` (same cached files).
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from uniformerv2.bench import header, threads  # noqa: E402
from uniformerv2.bench.common import environment, write_json  # noqa: E402
from uniformerv2.inference import runtime  # noqa: E402
from uniformerv2.inference.views import normalize_views  # noqa: E402

VARIANTS = ("dynamic", "dynamic-pc", "static", "static-all", "static-qop")


def load(args):
    if args.model:
        from uniformerv2.factory import load_model

        return load_model(args.model)
    from official import perturbed_model

    return perturbed_model(args.preset)


def model_views(model_fn, paths, cache) -> np.ndarray:
    """The normalised views the engine feeds the model for ``paths`` (read off its forward passes)."""
    from uniformerv2.inference import VideoClassifier

    clf = VideoClassifier(model_fn(), device="cpu", backend="onnxruntime", cache=cache)
    engine, forward, views = clf.engine, clf.engine.forward_views, []

    def record(batch):
        views.append(normalize_views(batch.cpu(), engine.data.mean, engine.data.std).contiguous().numpy())
        return forward(batch)

    engine.forward_views = record
    for r in clf.predict_many(paths, workers=0):
        if not r.ok:
            raise SystemExit(f"cannot read {r.path}: {r.error}")
    return np.concatenate(views)


def build(tag: str, fp32: Path, out: Path, calib: np.ndarray) -> Path:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    dst = out / f"{tag}.onnx"
    if dst.exists():
        return dst
    import onnx

    keep = sorted(runtime.head_nodes(onnx.load(str(fp32), load_external_data=False).graph))
    linear = {"op_types_to_quantize": ["MatMul", "Gemm"], "nodes_to_exclude": keep}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.views = iter(calib[i:i + 1] for i in range(len(calib)))

        def get_next(self):
            v = next(self.views, None)
            return None if v is None else {"video": v}

    if tag in ("dynamic", "dynamic-pc"):
        quantize_dynamic(str(fp32), str(dst), weight_type=QuantType.QInt8, per_channel=tag == "dynamic-pc",
                         extra_options={"MatMulConstBOnly": True}, **linear)
    else:
        every = tag == "static-all"
        quantize_static(str(fp32), str(dst), Reader(),
                        quant_format=QuantFormat.QOperator if tag == "static-qop" else QuantFormat.QDQ,
                        op_types_to_quantize=["MatMul", "Gemm", *(["Conv"] if every else [])],
                        nodes_to_exclude=keep, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"MatMulConstBOnly": not every})
    return dst


def runners(files: dict, x: np.ndarray, openvino: bool) -> dict:
    import onnxruntime as ort

    out = {}
    n = torch.get_num_threads()
    for tag, path in files.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = n, 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        out[f"onnxruntime {tag}"] = lambda s=sess: s.run(["logits"], {"video": x})[0]
    if openvino:
        import openvino as ov

        core = ov.Core()
        for tag, path in files.items():
            if tag.startswith("dynamic"):   # MatMulInteger graphs: measured several times slower under OpenVINO
                continue
            for prec in ("f32", "bf16") if tag == "fp32" else ("f32",):
                try:
                    compiled = core.compile_model(str(path), "CPU", {
                        "INFERENCE_NUM_THREADS": n, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                        "INFERENCE_PRECISION_HINT": prec})
                except Exception as e:  # noqa: BLE001 - a file the plugin cannot compile is reported, not fatal
                    print(f"openvino {prec} {tag}: cannot compile ({str(e).splitlines()[0][:120]})", file=sys.stderr)
                    continue
                req, logits = compiled.create_infer_request(), compiled.output("logits")
                out[f"openvino {prec} {tag}"] = lambda r=req, o=logits: r.infer({"video": x})[o].copy()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="DIR", help="a trained model directory")
    src.add_argument("--preset", help="a preset, perturbed weights (those of cpu_vs_official.py)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--list", metavar="FILE", help="labelled list: each variant's top-1 and agreement with fp32")
    p.add_argument("--calib", metavar="FILE", help="labelled list: --calib-videos of its videos, evenly spaced, "
                   "calibrate the static variants")
    p.add_argument("--calib-videos", type=int, default=16)
    p.add_argument("--root", default="", help="resolve the lists' relative paths here")
    p.add_argument("--time", action="store_true", help="batch-1 latency of each file, alternating rounds, median")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--openvino", action="store_true", help="also time each file under OpenVINO")
    p.add_argument("--cache", metavar="DIR", help="the engine's ONNX files (default: the cache folder)")
    p.add_argument("--out", metavar="DIR", help="where the variants are written (default: build/quant/<model>)")
    p.add_argument("--threads", type=int)
    p.add_argument("-o", "--output", metavar="FILE", help="also write every figure as JSON")
    args = p.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)   # the quantizer's advice
    from uniformerv2.engine.data import labelled_items

    with threads(args.threads):
        print(header())
        model = load(args).eval()
        name = Path(args.model).name if args.model else args.preset
        out = Path(args.out or Path("build") / "quant" / name)
        out.mkdir(parents=True, exist_ok=True)
        files = {"fp32": runtime.onnx_file(model, "none", args.cache)}

        def items(lst):
            return labelled_items(lst, root=args.root, model_labels=model.labels)[0]

        if args.calib:
            every = items(args.calib)
            picked = every[::max(1, len(every) // args.calib_videos)][:args.calib_videos]   # spread over the list
            calib = model_views(lambda: load(args), [it.path for it in picked], args.cache)
        else:
            g = torch.Generator().manual_seed(1)
            clips = torch.randint(0, 256, (2, 3, model.num_frames, model.img_size, model.img_size), dtype=torch.uint8,
                                  generator=g)
            calib = normalize_views(clips, model.data_config.mean, model.data_config.std).numpy()
        for tag in args.variants:
            t0 = time.perf_counter()
            files[tag] = (runtime.onnx_file(model, "int8", args.cache) if tag == "dynamic"
                          else build(tag, files["fp32"], out, calib))
            print(f"{tag}: {files[tag]} ({files[tag].stat().st_size / 1e6:.0f} MB, {time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr)
        result = {"model": name, "variants": list(files), "calibration_views": len(calib), "rows": {}}
        if args.list:
            from uniformerv2.inference import VideoClassifier

            labelled = items(args.list)
            labels = np.array([it.label for it in labelled])
            clf = VideoClassifier(load(args), device="cpu", backend="onnxruntime", cache=args.cache)
            probs = {}
            for tag, path in files.items():
                clf.engine.path, clf.engine._sessions = path, {}
                probs[tag] = np.stack([r.probs for r in clf.predict_many([it.path for it in labelled], workers=0)])
            ref = probs["fp32"].argmax(1)
            for tag, pr in probs.items():
                result["rows"][f"onnxruntime {tag}"] = {
                    "top1": float(100 * (pr.argmax(1) == labels).mean()),
                    "agreement_with_fp32": float(100 * (pr.argmax(1) == ref).mean()),
                    "max_prob_diff": float(np.abs(pr - probs["fp32"]).max())}
            result["videos"] = len(labels)
        if args.time:
            g = torch.Generator().manual_seed(0)
            clip = torch.randint(0, 256, (1, 3, model.num_frames, model.img_size, model.img_size), dtype=torch.uint8,
                                 generator=g)
            x = normalize_views(clip, model.data_config.mean, model.data_config.std).contiguous().numpy()
            run = runners(files, x, args.openvino)
            logits = {k: r() for k, r in run.items()}   # the untimed round
            times = {k: [] for k in run}
            for _ in range(args.iters):
                for k, r in run.items():
                    t0 = time.perf_counter()
                    r()
                    times[k].append(time.perf_counter() - t0)
            base = statistics.median(times["onnxruntime fp32"])
            for k in run:
                row = result["rows"].setdefault(k, {})
                row.update(latency_s=statistics.median(times[k]), times_s=times[k],
                           ratio_to_fp32=statistics.median(times[k]) / base,
                           max_logit_diff=float(np.abs(logits[k] - logits["onnxruntime fp32"]).max()))
            result["iters"] = args.iters
        env = environment()
    print("| runtime, file | top-1 | top-1 agreement with fp32 | max prob diff | latency (s) | ratio to ONNX Runtime fp32 "
          "| max logit diff |")
    print("|---|---|---|---|---|---|---|")
    for k, r in result["rows"].items():
        def f(key, fmt):
            return format(r[key], fmt) if key in r else "-"
        print(f"| {k} | {f('top1', '.2f')} | {f('agreement_with_fp32', '.1f')} | {f('max_prob_diff', '.2g')} | "
              f"{f('latency_s', '.3f')} | {f('ratio_to_fp32', '.2f')} | {f('max_logit_diff', '.2g')} |")
    if args.output:
        write_json(args.output, {"benchmark": "cpu_quantization", "options": vars(args), "environment": env,
                                 "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
