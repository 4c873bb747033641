"""CPU cores per GPU for every shipped training recipe: today's input path against prepared files with the
augmentation on the device.

For each distinct data recipe of the shipped configs (frames, crop, RandAugment, flip, repeated augmentation),
``uniformerv2.bench.pipeline_rates`` measures training clips/s per CPU core on the same generated Kinetics-like
files (raw and prepared), one worker process per case, side by side. Cores per GPU = the GPU's training
clips/s for that recipe / clips/s per core. The GPU rates are the H100 training targets of docs/benchmarks.md
(B/16 8x224: 350 clips/s, L/14 8x224: 75) scaled by frames x pixels: assumptions, not measurements.

    python benchmarks/pipeline_recipes.py [--clips 16] [--workdir DIR] [--out table.md]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

TARGET = {"b16": 350.0, "l14": 75.0}   # H100 training clips/s at 8x224 (docs/benchmarks.md targets)
SKIP = {"demo_synth", "tiny_cpu"}


def recipes() -> dict:
    """{data recipe: [config names]} over the shipped configs, with the preset's DataConfig and arch."""
    from uniformerv2.engine.config import resolve_path, shipped_configs
    from uniformerv2.model.presets import get_preset

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=16, help="clips timed per case")
    p.add_argument("--workdir", default=None, help="keep the generated and prepared files here")
    p.add_argument("--out", default=None, help="also write the markdown table here")
    args = p.parse_args(argv)

    import tempfile

    from uniformerv2.bench import _load, header, pipeline_rates

    work = Path(args.workdir or tempfile.mkdtemp())
    lines = [header() + f"; load average {_load()} at the start",
             "", "| configs | frames x crop | RandAugment, flip, clips per video | GPU clips/s (assumed) | "
                 "clips/s per core: raw, CPU aug (today) | prepared, device aug | cores per GPU today | "
                 "cores per GPU prepared + device |", "|---|---|---|---|---|---|---|---|"]
    measured: dict = {}   # the data side does not depend on the arch: one measurement per data recipe
    for (arch, frames, crop, ra, flip, reps), rec in recipes().items():
        if (frames, crop, ra, flip, reps) not in measured:
            r = pipeline_rates(data_config=rec["data_config"], clips=args.clips, workdir=work, verbose=False,
                               cases=[("raw", "cpu"), ("prepared", "device")])
            measured[frames, crop, ra, flip, reps] = {(x["files"], x["augment_on"]): x["clips_per_core_s"]
                                                      for x in r["rows"]}
        rate = measured[frames, crop, ra, flip, reps]
        today, fast = rate[("raw", "cpu")], rate[("prepared", "device")]
        gpu = gpu_rate(arch, frames, crop)
        names = ", ".join(rec["configs"])
        lines.append(f"| {names} | {frames}x{crop} | {'yes' if ra else 'no'}, {'yes' if flip else 'no'}, {reps} | "
                     f"{gpu:.0f} | {today:.1f} | {fast:.1f} | {gpu / today:.0f} | {gpu / fast:.0f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    lines.append(f"\nload average {_load()} at the end")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
