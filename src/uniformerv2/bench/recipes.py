"""CPU cores per GPU for every shipped training recipe (``uniformerv2 bench recipes``): today's input path
against prepared files with the augmentation on the device.

For each distinct data recipe of the shipped configs (frames, crop, RandAugment, flip, repeated augmentation),
``bench.pipeline.pipeline_rates`` measures training clips/s per CPU core on the same generated Kinetics-like
files (raw and prepared), one worker process per case, side by side. Cores per GPU = the GPU's training
clips/s for that recipe / clips/s per core. The GPU rates are the H100 training targets of docs/benchmarks.md
(B/16 8x224: 350 clips/s, L/14 8x224: 75) scaled by frames x pixels: assumptions, not measurements.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

TARGET = {"b16": 350.0, "l14": 75.0}   # H100 training clips/s at 8x224 (docs/benchmarks.md targets)
SKIP = {"demo_synth", "tiny_cpu"}


def recipes() -> dict:
    """{data recipe: [config names]} over the shipped configs, with the preset's DataConfig and arch."""
    from ..engine.config import resolve_path, shipped_configs
    from ..model.presets import get_preset

    out: dict = {}
    for name in shipped_configs():
        if name in SKIP:
            continue
        cfg = yaml.safe_load(resolve_path(name).read_text())
        preset = cfg["model"]["preset"]
        dc = get_preset(preset).data_config(**(cfg.get("data", {}).get("pipeline") or {}))
        arch = "l14" if "l14" in preset else "b16"
        key = (arch, dc.num_frames, dc.crop_size, dc.rand_augment, dc.flip, dc.repeated_aug)
        out.setdefault(key, {"data_config": dc, "configs": []})["configs"].append(name)
    return out


def gpu_rate(arch: str, frames: int, crop: int) -> float:
    return TARGET[arch] * 8 / frames * (224 / crop) ** 2


def bench_recipes(*, clips: int = 16, workdir=None, verbose: bool = True) -> dict:
    """Per distinct data recipe of the shipped configs: training clips/s per core today (raw files, CPU
    augmentation) and with prepared files and the augmentation on the device, and the cores per GPU each needs
    at the assumed GPU rate (``gpu_rate``)."""
    import tempfile

    from .common import load_text
    from .pipeline import pipeline_rates

    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    work = Path(workdir or tmp.name)
    rows, measured = [], {}   # the data side does not depend on the arch: one measurement per data recipe
    load_start = load_text()
    try:
        for (arch, frames, crop, ra, flip, reps), rec in recipes().items():
            if (frames, crop, ra, flip, reps) not in measured:
                r = pipeline_rates(data_config=rec["data_config"], clips=clips, workdir=work, verbose=False,
                                   cases=[("raw", "cpu"), ("prepared", "device")])
                measured[frames, crop, ra, flip, reps] = {(x["files"], x["augment_on"]): x["clips_per_core_s"]
                                                          for x in r["rows"]}
            rate = measured[frames, crop, ra, flip, reps]
            today, fast = rate[("raw", "cpu")], rate[("prepared", "device")]
            gpu = gpu_rate(arch, frames, crop)
            rows.append({"configs": rec["configs"], "arch": arch, "frames": frames, "crop_size": crop,
                         "rand_augment": bool(ra), "flip": bool(flip), "repeated_aug": reps, "gpu_clips_per_s": gpu,
                         "clips_per_core_s_today": today, "clips_per_core_s_prepared_device": fast,
                         "cores_per_gpu_today": gpu / today, "cores_per_gpu_prepared_device": gpu / fast})
            if verbose:
                print(recipes_table({"rows": rows[-1:]})[-1], file=sys.stderr, flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"clips": clips, "gpu_targets": TARGET, "load_start": load_start, "load_end": load_text(), "rows": rows}


def recipes_table(result: dict) -> list[str]:
    lines = ["| configs | frames x crop | RandAugment, flip, clips per video | GPU clips/s (assumed) | "
             "clips/s per core: raw, CPU aug (today) | prepared, device aug | cores per GPU today | "
             "cores per GPU prepared + device |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {', '.join(r['configs'])} | {r['frames']}x{r['crop_size']} | "
                     f"{'yes' if r['rand_augment'] else 'no'}, {'yes' if r['flip'] else 'no'}, {r['repeated_aug']} | "
                     f"{r['gpu_clips_per_s']:.0f} | {r['clips_per_core_s_today']:.1f} | "
                     f"{r['clips_per_core_s_prepared_device']:.1f} | {r['cores_per_gpu_today']:.0f} | "
                     f"{r['cores_per_gpu_prepared_device']:.0f} |")
    return lines
