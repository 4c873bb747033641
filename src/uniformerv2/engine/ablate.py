"""The paper's ablation studies (Tables 1–4), rerun on any recipe: ``run_study(study, recipe, output)``.

Every variant of a study is a set of :class:`~uniformerv2.model.ModelConfig` options put on top of the recipe's
model (its ``model.options``); each one is trained with the same recipe and the same seeds by
:func:`uniformerv2.engine.train`, then counted (parameters, FLOPs per clip) and tested.

    components  Table 1: none (frame-only ViT) / global UniBlocks only / local UniBlocks only / local + global /
                + temporal downsampling (twice the input frames, the same number of tokens)
    local       Table 2: the local operator: local MHRA ×1, ×2, temporal MHSA ×2, ST-Adapter ×2
    global      Table 3: the global UniBlocks with and without the DPE, and which layers feed them
    fusion      Table 4: sequential / parallel / hierarchical_q / hierarchical_kv multi-stage fusion
    all         every variant of the four, each trained once (a model shared by two studies is one run)

The recipe's model is the "full" model the studies start from: its global layers G, its local MHRA placement
(double if it has none) and its number of tokens in time T' (``time_steps``).  Variants without temporal
downsampling take T' frames, those with it 2·T' frames (the paper's "16 frames in, 8 tokens").

Output folder::

    runs/<variant>/seed<k>/        the training run of one variant and seed (``engine.train``'s run directory)
    runs/<variant>/seed<k>.log     its output, when it ran in a worker process (``jobs`` > 1)
    results/<variant>-seed<k>.json one finished run: params, FLOPs, top-1, time, CPU time (written atomically)
    report.json  ablation.md  ablation.png   the study: JSON report, markdown table, bar chart
    ablation-<study>.png           one chart per table, when the report holds several

A study that is stopped resumes where it stopped: finished runs (a result file whose recipe fingerprint
matches) are skipped, and an unfinished run continues from its last checkpoint (``train(..., resume=True)``).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError
from ..fileio import atomic_write, atomic_write_json, atomic_write_text
from ..model.config import ModelConfig
from ..model.presets import build_config
from .config import dump, load_config
from .recipes import synthetic_recipe  # noqa: F401  (the recipe of the synthetic benchmark, shared with the demo)

STUDIES = ("components", "local", "global", "fusion")
STUDY_CHOICES = STUDIES + ("all",)
STUDY_TITLES = {
    "components": "Table 1: components",
    "local": "Table 2: local UniBlock (local temporal operator)",
    "global": "Table 3: global UniBlock (DPE, layers that feed it)",
    "fusion": "Table 4: multi-stage fusion",
}
# What the options of a variant may set; everything else comes from the recipe.
VARIANT_FIELDS = ("local_mhra", "local_op", "global_layers", "dpe", "fusion", "temporal_downsample", "num_frames")

# The paper's figures (B/16; GFLOPs per view as fvcore counts them, i.e. multiply-adds; K400 8×4×3, SSv2 16×1×3).
PAPER = {
    ("components", "none"): "45.1 SSv2 / 83.1 K400, 141 G",
    ("components", "global"): "63.3 SSv2 / 84.4 K400, 148 G",
    ("components", "local"): "67.7 SSv2 / 83.6 K400, 170 G",
    ("components", "local+global"): "68.7 SSv2 / 84.4 K400, 186 G",
    ("components", "local+global+tdown"): "69.5 SSv2 / 84.4 K400, 187 G",
    ("local", "mhra x2"): "69.5 SSv2",
    ("local", "temporal_mhsa x2"): "65.2 SSv2",
    ("local", "st_adapter x2"): "68.0 SSv2",
    ("global", "dpe"): "69.5 SSv2 (layers 5–12 of 12)",
    ("global", "nodpe"): "DPE adds +0.4 SSv2 / +0.2 K400",
    ("fusion", "sequential"): "69.5 SSv2 (best)",
}


@dataclass
class Variant:
    study: str
    tag: str    # short id inside the study (also the key of PAPER)
    name: str   # what the table calls it
    options: dict = field(default_factory=dict)  # every field of VARIANT_FIELDS

    @property
    def key(self) -> str:
        """The run's name: the options that make the model, so one model shared by two studies is one run."""
        o = self.options
        g = "-".join(map(str, o["global_layers"])) or "none"
        local = "none" if o["local_mhra"] == "none" else f"{o['local_mhra']}-{o['local_op']}"
        return (f"local-{local}_global-{g}_{'dpe' if o['dpe'] else 'nodpe'}_{o['fusion']}"
                f"_{'tdown' if o['temporal_downsample'] else 'notdown'}_f{o['num_frames']}")

    @property
    def paper(self) -> str:
        return PAPER.get((self.study, self.tag), "")


def base_model(recipe: dict) -> ModelConfig:
    """The recipe's model: its preset / arch with its ``model.options`` (a resolved training config)."""
    cfg, _ = build_config(recipe["model"]["preset"], **recipe["model"]["options"])
    return cfg


def study_variants(study: str, base: ModelConfig) -> list[Variant]:
    """The variants of ``study`` for the full model ``base`` (a ModelConfig); "all" = every study's."""
    if study == "all":
        return [v for s in STUDIES for v in study_variants(s, base)]
    if study not in STUDIES:
        raise UserError(f"unknown study {study!r}; choose one of {', '.join(STUDY_CHOICES)}")
    depth = base.depth
    g = list(base.global_layers) or list(range(depth - min(4, depth), depth))
    lm = base.local_mhra if base.local_mhra != "none" else "double"
    t = base.time_steps

    def opts(local_mhra=lm, local_op="mhra", global_layers=g, dpe=True, fusion="sequential", tdown=True):
        if local_mhra == "none":
            local_op = "mhra"  # irrelevant without a local operator: one name for one model
        if not global_layers:
            dpe, fusion = True, "sequential"
        return dict(local_mhra=local_mhra, local_op=local_op, global_layers=list(global_layers), dpe=dpe,
                    fusion=fusion, temporal_downsample=tdown, num_frames=2 * t if tdown else t)

    gs = f"{g}"
    if study == "components":
        return [
            Variant(study, "none", "none: frame-only ViT (no local, no global UniBlock)",
                    opts(local_mhra="none", global_layers=[], tdown=False)),
            Variant(study, "global", f"global UniBlocks only (after layers {gs})",
                    opts(local_mhra="none", tdown=False)),
            Variant(study, "local", f"local UniBlocks only (local MHRA, {lm})", opts(global_layers=[], tdown=False)),
            Variant(study, "local+global", "local + global UniBlocks", opts(tdown=False)),
            Variant(study, "local+global+tdown", f"local + global + temporal downsampling ({2 * t} frames in, "
                    f"{t} tokens)", opts()),
        ]
    if study == "local":
        return [
            Variant(study, "mhra x1", "local MHRA ×1 (before attention)", opts(local_mhra="single")),
            Variant(study, "mhra x2", "local MHRA ×2 (before attention and before the MLP)",
                    opts(local_mhra="double")),
            Variant(study, "temporal_mhsa x2", "temporal MHSA ×2 (TimeSformer's temporal attention)",
                    opts(local_mhra="double", local_op="temporal_mhsa")),
            Variant(study, "st_adapter x2", "ST-Adapter ×2 (down → depthwise 3×3×3 conv → up)",
                    opts(local_mhra="double", local_op="st_adapter")),
        ]
    if study == "global":
        out = [Variant(study, "dpe", f"DPE, global blocks after layers {gs}", opts()),
               Variant(study, "nodpe", f"no DPE, global blocks after layers {gs}", opts(dpe=False))]
        half = depth // 2
        sweeps = [("last", [depth - 1], "last layer"), ("last half", list(range(half, depth)), "last half"),
                  ("all", list(range(depth)), "every layer"), ("first half", list(range(half)), "first half")]
        seen = [g]
        for tag, layers, what in sweeps:
            if layers and layers not in seen:
                seen.append(layers)
                out.append(Variant(study, f"layers {tag}", f"DPE, global blocks after layers {layers} ({what})",
                                   opts(global_layers=layers)))
        return out
    return [Variant(study, f, f"{f} fusion" + (" (the paper's design)" if f == "sequential" else ""), opts(fusion=f))
            for f in ("sequential", "parallel", "hierarchical_q", "hierarchical_kv")]


def count_flops(model) -> int:
    """FLOPs of one forward pass of one clip (1, 3, T, S, S) in eval mode, as ``torch.utils.flop_counter``
    counts them: matrix products, convolutions and attention, 2 per multiply-add; elementwise ops are not
    counted (nor, therefore, the local MHRA's 3-tap temporal convolution, a few multiply-adds per channel).
    PyTorch's table lacks the CPU kernel of ``scaled_dot_product_attention``; it gets the CUDA kernels' formula."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.cfg
    param = next(model.parameters())
    clip = torch.zeros(1, 3, cfg.num_frames, cfg.img_size, cfg.img_size, dtype=param.dtype, device=param.device)
    was_training = model.training
    model.eval()
    try:
        cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
        mapping = {cpu_sdpa: _sdpa_flops} if cpu_sdpa is not None else {}
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:  # (its hooks fail under no_grad)
            model(clip)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _fingerprint(cfg: dict) -> str:
    """What makes a run's result: the whole resolved config, minus the progress display."""
    c = json.loads(json.dumps(cfg))
    c["train"].pop("progress", None)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_study(study: str = "components", recipe="demo_synth", output="ablation-output", *, seeds: int = 1,
              overrides=None, progress: bool = True, chance: float | None = None, dataset: str | None = None,
              log=print, jobs: int = 1, cache: bool = False) -> dict:
    """Train and test every variant of ``study`` with ``recipe`` (a training config: dict, YAML path or
    shipped name, with ``overrides`` on top) and ``seeds`` seeds each; write the report, the markdown table and
    the charts to ``output``; return the report.  Stopped studies resume (see the module docstring).
    ``chance``: the top-1 of a guess, drawn in the chart; ``dataset``: how the report names the data.
    ``jobs``: runs trained at once, each in a process of its own on cpus/jobs threads (its output in
    ``runs/<variant>/seed<k>.log``); ``cache``: decode every video once per process and keep it in memory
    (small datasets such as the synthetic benchmark)."""
    if study not in STUDY_CHOICES:
        raise UserError(f"unknown study {study!r}; choose one of {', '.join(STUDY_CHOICES)}")
    if not isinstance(seeds, int) or seeds < 1:
        raise UserError(f"seeds must be a positive integer, got {seeds!r}")
    if not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"jobs must be a positive integer, got {jobs!r}")
    out = Path(output)
    base_cfg = load_config(recipe, overrides)
    base = base_model(base_cfg)
    variants = study_variants(study, base)
    seed_list = [base_cfg["seed"] + k for k in range(seeds)]
    runs, seen = [], set()
    for v in variants:
        if v.key not in seen:
            seen.add(v.key)
            runs.extend((v, s) for s in seed_list)
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else torch.get_num_threads()
    log(f"ablation study '{study}': {len(seen)} models x {seeds} seed(s) = {len(runs)} training runs, "
        f"output {out}" + (f", {jobs} at a time on {threads} thread(s) each" if jobs > 1 else ""))

    results: dict[tuple[str, int], dict] = {}
    pending: list[_Run] = []
    t_study = time.time()
    for i, (v, seed) in enumerate(runs, 1):
        cfg = load_config(base_cfg, {"seed": seed, "model": {"options": v.options},
                                     "train": {"progress": progress and jobs == 1}})
        head = f"[{i}/{len(runs)}] {v.study} · {v.name} (seed {seed})"
        run = _Run(v, seed, _fingerprint(cfg), cfg, out / "runs" / v.key / f"seed{seed}",
                   out / "results" / f"{v.key}-seed{seed}.json", head, cache)
        done = _read_json(run.result)
        if done is not None and done.get("fingerprint") == run.fingerprint:
            log(f"{run.head}: finished earlier, top-1 {done['top1']:.1f}% — skipped")
            if (run.run_dir / "final").is_dir():  # counted again: cheap, and follows changes in the counting
                done.update(_count(run.run_dir / "final"))
            results[(v.key, seed)] = done
            continue
        run.resume = (run.run_dir / "config.yaml").is_file() and _same_config(run.run_dir / "config.yaml", cfg)
        if run.run_dir.exists() and not run.resume:
            shutil.rmtree(run.run_dir)
        pending.append(run)

    def finished(run: _Run, res: dict) -> None:
        results[(run.variant.key, run.seed)] = res
        log(f"{run.head}: top-1 {res['top1']:.1f}% ({res['metric']}), {res['gflops']:.3f} GFLOPs/clip, "
            f"{res['params']:,} params, {res['seconds']:.0f} s, {res['cpu_seconds']:.0f} s CPU")

    def starting(run: _Run, queued: bool = False) -> str:
        return (f"{run.head}: {'queued, ' if queued else ''}"
                f"{'resuming' if run.resume and (run.run_dir / 'checkpoints').is_dir() else 'training'} ...")

    if jobs == 1 or len(pending) <= 1:
        for run in pending:
            log(starting(run))
            finished(run, run())
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        # spawned, not forked: a fork of a process whose OpenMP pool has run can hang in the child
        with cf.ProcessPoolExecutor(min(jobs, len(pending)), mp_context=mp.get_context("spawn"),
                                    initializer=torch.set_num_threads, initargs=(threads,)) as pool:
            futures = {}
            for run in pending:
                log(starting(run, queued=True))
                futures[pool.submit(run, run.run_dir.parent / f"{run.run_dir.name}.log")] = run
            for f in cf.as_completed(futures):
                finished(futures[f], f.result())

    report = _report(study, variants, seed_list, results, base_cfg, chance, dataset, time.time() - t_study)
    report["machine"].update(jobs=jobs, threads=threads)
    md = markdown(report)
    out.mkdir(parents=True, exist_ok=True)
    chart = out / "ablation.png"
    if plot(report, chart):
        report["chart"] = str(chart)
        report["charts"] = plot_each_study(report, out)
    else:
        report["chart"] = None
        report["note"] = "no chart: matplotlib is not installed (pip install 'uniformerv2[plots]')"
        md += f"\n_{report['note']}_\n"
    atomic_write_text(out / "ablation.md", md)
    atomic_write_json(out / "report.json", report, indent=2)
    log("\n" + md)
    log(f"report: {out / 'report.json'}, table: {out / 'ablation.md'}"
        + (f", chart: {chart}" if report["chart"] else ""))
    return report


_CLIPS = None  # this process's decoded videos (``cache``): kept from one run to the next


@dataclass
class _Run:
    """One training run of a study: a variant and a seed. Called (here or in a worker process), it trains,
    measures, writes its result file atomically and returns the result."""
    variant: Variant
    seed: int
    fingerprint: str
    cfg: dict
    run_dir: Path
    result: Path
    head: str
    cache: bool
    resume: bool = False

    def __call__(self, log_file: Path | None = None) -> dict:
        import contextlib
        import resource

        from .train import TrainingDiverged, cached_datasets, train

        global _CLIPS
        with contextlib.ExitStack() as stack:
            if log_file is not None:  # a worker: its output to a file of its own
                log_file.parent.mkdir(parents=True, exist_ok=True)
                f = stack.enter_context(open(log_file, "a", buffering=1))
                stack.enter_context(contextlib.redirect_stdout(f))
                stack.enter_context(contextlib.redirect_stderr(f))
            datasets = None
            if self.cache:
                from ..data import ClipCache

                if _CLIPS is None:
                    _CLIPS = ClipCache()
                datasets = cached_datasets(self.cfg, _CLIPS)
            usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            started = time.time()
            try:
                summary = train(self.cfg, self.run_dir, resume=self.resume, datasets=datasets)
            except TrainingDiverged as e:
                raise UserError(f"{self.variant.name} (seed {self.seed}) diverged: {e}") from None
            seconds = time.time() - started
            cpu = sum(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime for before, after in
                      zip(usage, [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]))
            res = _measure(self.variant, self.seed, self.fingerprint, summary, self.run_dir, seconds, cpu,
                           resumed=self.resume)
        atomic_write_json(self.result, res, indent=2)
        return res


def _same_config(path: Path, cfg: dict) -> bool:
    import yaml

    try:
        old = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(old, dict) and _fingerprint(old) == _fingerprint(yaml.safe_load(dump(cfg)))


def _measure(v: Variant, seed: int, fp: str, summary: dict, run_dir: Path, seconds: float, cpu: float,
             resumed: bool) -> dict:
    if summary.get("test"):
        top1, top5, metric = summary["test"]["top1"], summary["test"]["top5"], "test"
    elif summary.get("best_val_top1") is not None:
        top1, top5, metric = summary["best_val_top1"], None, "val"
    else:
        raise UserError("the recipe has neither a test nor a validation list: nothing to compare the variants on")
    return {"key": v.key, "seed": seed, "fingerprint": fp, "options": v.options, **_count(run_dir / "final"),
            "top1": top1, "top5": top5, "metric": metric,
            "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "resumed": resumed, "steps": summary["steps"],
            "run_dir": str(run_dir),
            "finished": datetime.datetime.now().isoformat(timespec="seconds")}


def _count(model_dir: Path) -> dict:
    """Parameters and FLOPs per clip of the trained model in ``model_dir``."""
    from ..factory import from_pretrained

    model = from_pretrained(model_dir)
    flops = count_flops(model)
    return {"params": count_params(model), "flops": flops, "gflops": flops / 1e9}


def _report(study, variants, seeds, results, base_cfg, chance, dataset, seconds) -> dict:
    rows = []
    for v in variants:
        rs = [results[(v.key, s)] for s in seeds]
        top1 = [r["top1"] for r in rs]
        mean = sum(top1) / len(top1)
        sd = (sum((x - mean) ** 2 for x in top1) / (len(top1) - 1)) ** 0.5 if len(top1) > 1 else None
        rows.append({"study": v.study, "variant": v.name, "tag": v.tag, "key": v.key, "options": v.options,
                     "params": rs[0]["params"], "flops": rs[0]["flops"], "gflops": rs[0]["gflops"], "top1": mean,
                     "top1_sd": sd, "top1_min": min(top1), "top1_max": max(top1), "top1_seeds": top1,
                     "metric": rs[0]["metric"], "seconds": sum(r["seconds"] for r in rs) / len(rs),
                     "cpu_seconds": (sum(r["cpu_seconds"] for r in rs) / len(rs)
                                     if all(r.get("cpu_seconds") is not None for r in rs) else None),
                     "resumed": any(r["resumed"] for r in rs),
                     "paper": v.paper})
    m = base_cfg["model"]
    return {
        "study": study, "date": datetime.date.today().isoformat(), "dataset": dataset or base_cfg["data"]["root"],
        "recipe": {"preset": m["preset"], "options": m["options"], "epochs": base_cfg["train"]["epochs"],
                   "max_steps": base_cfg["train"]["max_steps"], "batch_size": base_cfg["train"]["batch_size"],
                   "lr": base_cfg["train"]["lr"]},
        "seeds": seeds, "chance": chance, "rows": rows, "seconds": round(seconds, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
    }


def markdown(report: dict) -> str:
    """The report as markdown: one table per study."""
    seeds = report["seeds"]
    lines = [f"# Ablation: {report['study']} ({report['date']})", "",
             f"Data: {report['dataset']}. Every variant trained with the same recipe ({report['recipe']['preset']}, "
             f"epochs {report['recipe']['epochs']}, batch {report['recipe']['batch_size']}, lr "
             f"{report['recipe']['lr']:g}), seed(s) {', '.join(map(str, seeds))}"
             + (f"; chance {100 * report['chance']:.1f}%" if report.get("chance") else "") + ".",
             "GFLOPs: one clip, one forward, torch.utils.flop_counter (2 per multiply-add; the paper's fvcore "
             "figures count 1). Time, CPU: training wall time and CPU time (the run's process and its loader "
             "workers) per seed, mean over the seeds, on this machine"
             + (f" ({report['machine']['jobs']} runs at a time, {report['machine']['threads']} thread(s) each)"
                if report.get("machine", {}).get("jobs", 1) > 1 else "") + ".", ""]
    for study in STUDIES:
        rows = [r for r in report["rows"] if r["study"] == study]
        if not rows:
            continue
        metric = rows[0]["metric"]
        lines += [f"## {STUDY_TITLES[study]}", "",
                  f"| variant | params | GFLOPs/clip | {metric} top-1 (%) | min–max | time (s) | CPU (s) "
                  "| paper (B/16) |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            top1 = f"{r['top1']:.1f}" + (f" ± {r['top1_sd']:.1f}" if r["top1_sd"] is not None else "")
            spread = f"{r['top1_min']:.1f}–{r['top1_max']:.1f}" if len(seeds) > 1 else "—"
            cpu = "—" if r.get("cpu_seconds") is None else f"{r['cpu_seconds']:.0f}"
            mark = "*" if r["resumed"] else ""
            lines.append(f"| {r['variant']} | {r['params']:,} | {r['gflops']:.3f} | {top1} | {spread} | "
                         f"{r['seconds']:.0f}{mark} | {cpu}{mark} | {r['paper'] or '—'} |")
        lines.append("")
    if any(r["resumed"] for r in report["rows"]):
        lines += ["\\* resumed after a stop: the time of the last part only.", ""]
    return "\n".join(lines)


def plot_each_study(report: dict, out: Path) -> dict:
    """A chart per study, ``out/ablation-<study>.png``, when the report holds several; {study: path}."""
    studies = [s for s in STUDIES if any(r["study"] == s for r in report["rows"])]
    charts = {}
    for s in studies if len(studies) > 1 else []:
        if plot({**report, "rows": [r for r in report["rows"] if r["study"] == s]}, out / f"ablation-{s}.png"):
            charts[s] = str(out / f"ablation-{s}.png")
    return charts


def plot(report: dict, path: Path) -> bool:
    """Bar chart of top-1 per variant, one panel per study. False when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    studies = [s for s in STUDIES if any(r["study"] == s for r in report["rows"])]
    heights = [sum(r["study"] == s for r in report["rows"]) for s in studies]
    fig, axes = plt.subplots(len(studies), 1, figsize=(9, 1.2 + 0.45 * sum(heights) + 0.6 * len(studies)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, study in zip(axes[:, 0], studies):
        rows = [r for r in report["rows"] if r["study"] == study]
        y = list(range(len(rows)))[::-1]
        ax.barh(y, [r["top1"] for r in rows], xerr=[r["top1_sd"] or 0 for r in rows], color="tab:blue",
                error_kw={"capsize": 3, "lw": 1})
        for yi, r in zip(y, rows):
            seeds = r.get("top1_seeds") or []
            if len(seeds) > 1:  # every seed's top-1 as a dot, the bar the mean, the whiskers ± one s.d.
                ax.plot(seeds, [yi] * len(seeds), "o", ms=3, color="black", alpha=0.6)
            label = f"{r['top1']:.1f}" + (f" ± {r['top1_sd']:.1f}" if r["top1_sd"] is not None else "")
            ax.text(1.01, yi, label, va="center", fontsize=8, transform=ax.get_yaxis_transform())  # right margin
        ax.set_yticks(y, [r["variant"] for r in rows], fontsize=8)
        if report.get("chance"):
            ax.axvline(100 * report["chance"], color="grey", ls="--", lw=1, label="chance")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_xlim(0, 102)
        ax.set_title(STUDY_TITLES[study], fontsize=9)
    axes[-1, 0].set_xlabel(f"{report['rows'][0]['metric']} top-1 (%)")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return True
