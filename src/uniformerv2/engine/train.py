"""The training loop, top to bottom: ``train(config, output_dir, resume=False) -> summary dict``.

Run directory::

    config.yaml        the resolved config (defaults <- file <- overrides)
    metrics.jsonl      one JSON object per logged step ({"step": ..., "loss": ..., "lr": ...}) and per validation
    checkpoints/       step_XXXXXXXX.pt (last ``keep_last``), best.pt (best validation top-1)
    final/             the last weights as a model directory (``uniformerv2.from_pretrained``)
    best/              the best-validation weights, when validation ran
    curves.png         loss / LR / val top-1 against the step (needs matplotlib)

One optimiser step consumes one global batch of ``train.batch_size`` videos, split over processes and
``accum_steps`` micro-steps. Resume restores weights, optimiser, schedule, scaler, EMA, every RNG and the
position inside the epoch, so on CPU a resumed run ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from . import distributed as dist
from .config import dump, load_config
from .data import build_datasets, make_train_loader
from .evaluate import evaluate
from .metrics import plot_curves
from .optim import EMA, build_optimizer
from .schedule import WarmupCosine, scaled_lr


class TrainingDiverged(RuntimeError):
    """Too many consecutive optimiser steps with a non-finite loss or gradient."""


def compute_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over the batch (the loop divides by the global sample count)."""
    return F.cross_entropy(logits.float(), labels, reduction="sum")


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_dtype(precision: str, device: torch.device):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision], precision


def build_model(cfg: dict):
    """The config's model (preset/arch + options, pretrained / checkpoint weights, labels) with the
    config's ``data.pipeline`` applied to its data config."""
    from ..factory import create_model

    m = cfg["model"]
    labels = m["labels"]
    if isinstance(labels, str) and (Path(cfg["data"]["root"]) / labels).is_file():
        labels = str(Path(cfg["data"]["root"]) / labels)  # a labels file beside the data lists
    model = create_model(m["preset"], pretrained=m["pretrained"], checkpoint=m["checkpoint"], head=m["head"],
                         labels=labels, **m["options"])
    model.data_config = model.data_config.replace(**cfg["data"]["pipeline"])
    return model


def prepare_for_training(model, cfg: dict):
    """The training speed/memory variants (``accel.optimize``): lean MLPs, activation checkpointing."""
    from ..accel import optimize

    return optimize(model, for_inference=False, grad_checkpointing=cfg["train"]["grad_checkpointing"])


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (rank 0 only), optionally mirrored to TensorBoard."""

    def __init__(self, path: Path, enabled: bool, tensorboard: bool = False):
        self.path, self.enabled, self.tb = path, enabled, None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(path.parent / "tensorboard"))
            except ImportError:
                print("tensorboard is not installed; logging to metrics.jsonl only")

    def truncate_after(self, step: int) -> None:
        """On resume: drop records of steps after the checkpoint (they will be logged again)."""
        if self.enabled and self.path.exists():
            keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            self.path.write_text("".join(ln + "\n" for ln in keep))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(k, v, record["step"])

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def train(config, output_dir, resume: bool = False, overrides=None, datasets: dict | None = None) -> dict:
    """Train as ``config`` says (dict, YAML path or shipped name) into ``output_dir``; returns a summary.

    ``overrides``: dotted ``key=value`` strings or a nested dict on top of ``config``. ``datasets``:
    ready-made {"train": ..., "val": ..., "test": ...} datasets instead of the config's list files.
    """
    cfg = load_config(config, overrides)
    out = Path(output_dir)
    tc = cfg["train"]
    info = dist.setup(tc["device"])
    try:
        return _train(cfg, out, resume, info, datasets)
    finally:
        dist.cleanup()


def _train(cfg: dict, out: Path, resume: bool, info: dist.DistInfo, given: dict | None) -> dict:
    tc, dev, main = cfg["train"], info.device, info.is_main
    if main:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump(cfg))
    dist.barrier()

    # ---- model, data ----------------------------------------------------------------------------------
    seed_everything(cfg["seed"])  # same initial weights on every rank
    model = build_model(cfg)
    datasets = dict(given) if given else build_datasets(cfg, model.data_config, ("train", "val"), model.labels,
                                                        model.cfg.num_classes)
    train_set, val_set = datasets["train"], datasets.get("val")
    loader, sampler = make_train_loader(train_set, cfg, info)
    steps_per_epoch = sampler.batches_per_epoch
    total_steps = tc["epochs"] * steps_per_epoch
    if tc["max_steps"] is not None:
        total_steps = min(total_steps, tc["max_steps"])

    # ---- optimisation -----------------------------------------------------------------------------------
    model.to(dev)
    if tc["sync_bn"] and info.enabled:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    prepare_for_training(model, cfg)
    amp_dtype, precision = autocast_dtype(tc["precision"], dev)
    base_lr = scaled_lr(tc["lr"], tc["batch_size"], tc["lr_scaling"], tc["lr_ref_batch"])
    optimizer = build_optimizer(model, base_lr, tc["weight_decay"], tc["betas"], tc["eps"], tc["layer_decay"])
    scheduler = WarmupCosine(optimizer, base_lr, total_steps, round(tc["warmup_epochs"] * steps_per_epoch),
                             tc["min_lr"], tc["warmup_start_lr"])
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    ema = EMA(model, tc["ema_decay"]) if tc["ema_decay"] else None
    net = model
    if info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)
    fwd = torch.compile(net) if tc["compile"] else net
    params = [p for p in model.parameters() if p.requires_grad]

    # ---- state: fresh or resumed --------------------------------------------------------------------------
    step, epoch, batch_in_epoch = 0, 0, 0
    counters = {"skipped_videos": 0, "bad_steps": 0, "consecutive_bad": 0, "overflow_steps": 0}
    best = {"top1": None, "step": None}
    log = MetricsLog(out / "metrics.jsonl", main, tc["tensorboard"])
    state, path = ckpt.load_latest(out / "checkpoints") if resume else (None, None)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        counters.update(state["counters"])
        best = dict(state["best"])
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[info.rank] if len(rngs) == info.world_size else rngs[0])
        log.truncate_after(step)
        if main:
            print(f"resumed from {path} at step {step} (epoch {epoch}, batch {batch_in_epoch}/{steps_per_epoch})")
    else:
        if resume and main:
            print(f"no checkpoint in {out / 'checkpoints'}; starting from scratch")
        seed_everything(cfg["seed"] * 1000 + info.rank)  # dropout etc.: per rank, rank 0 = one-process run
        log.truncate_after(-1)
        log.write({"step": 0, "event": "start", "world_size": info.world_size, "device": str(dev),
                   "precision": precision, "global_batch": tc["batch_size"], "accum_steps": tc["accum_steps"],
                   "micro_batch": sampler.micro_batch, "lr_scaling": tc["lr_scaling"], "lr_ref_batch":
                   tc["lr_ref_batch"], "config_lr": tc["lr"], "base_lr": base_lr, "steps_per_epoch":
                   steps_per_epoch, "total_steps": total_steps, "train_videos": len(train_set)})
    if main:
        print(f"{len(train_set)} training videos, {steps_per_epoch} steps/epoch, {total_steps} steps; "
              f"global batch {tc['batch_size']} = {info.world_size} proc x {tc['accum_steps']} accum x "
              f"{sampler.micro_batch}; lr {base_lr:g} (scaling {tc['lr_scaling']}); {precision} on {dev}")

    def save_checkpoint():
        rngs = dist.all_gather_objects(ckpt.rng_state())
        if main:
            ckpt.save_step(out / "checkpoints", step, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None, "step": step, "epoch": epoch,
                "batch_in_epoch": batch_in_epoch, "counters": dict(counters), "best": dict(best), "rng": rngs,
                "world_size": info.world_size}, keep_last=tc["keep_last"])

    def validate():
        nonlocal best
        eval_model = model
        if ema is not None and cfg["eval"]["use_ema"]:
            eval_model = _ema_copy(model, ema)
        res = evaluate(eval_model, val_set, aggregate=cfg["eval"]["aggregate"], batch_size=cfg["eval"]["batch_size"],
                       num_workers=_eval_workers(cfg), progress=tc["progress"] and main, desc="val")
        model.train()
        rec = {"step": step, "epoch": epoch, "val_top1": res["top1"], "val_top5": res["top5"],
               "val_mean_class_accuracy": res["mean_class_accuracy"], "val_count": res["count"],
               "val_skipped": len(res["skipped"])}
        log.write(rec)
        if main:
            print(f"step {step} epoch {epoch}: val top-1 {res['top1']:.2f} top-5 {res['top5']:.2f} "
                  f"({res['count']} videos)")
        if best["top1"] is None or res["top1"] > best["top1"]:
            best = {"top1": res["top1"], "step": step}
            if main:
                ckpt.save(out / "checkpoints" / "best.pt",
                          {"model": eval_model.state_dict(), "step": step, "top1": res["top1"]})
        return res

    # ---- the loop ------------------------------------------------------------------------------------------
    model.train()
    bar = None
    if main and tc["progress"]:
        from tqdm import tqdm
        bar = tqdm(total=total_steps, initial=step, desc="train", dynamic_ncols=True)
    window = {"loss": 0.0, "correct": 0.0, "count": 0.0, "clips": 0, "wait": 0.0, "time": 0.0, "norm": []}
    while step < total_steps:
        train_set.set_epoch(epoch)
        sampler.set_epoch(epoch, batch_in_epoch)
        batches = iter(loader)
        while batch_in_epoch < steps_per_epoch and step < total_steps:
            t_step = time.perf_counter()
            lr = scheduler.set_step(step)
            optimizer.zero_grad(set_to_none=True)
            step_loss = step_correct = step_count = 0.0
            bad = False
            for micro in range(tc["accum_steps"]):
                t0 = time.perf_counter()
                batch = next(batches)
                window["wait"] += time.perf_counter() - t0
                video, labels = batch["video"], batch["label"]
                n_local, skipped_local = len(labels), len(batch.get("skipped", []))
                if n_local == 0 or video is None:  # all of this rank's share failed to decode:
                    # a zero-weight dummy clip keeps this rank in step with the others (DDP, all-reduce)
                    video, labels = torch.zeros(1, 3, *clip_shape(model)), torch.zeros(1, dtype=torch.long)
                video = video.to(dev, non_blocking=True)
                labels = labels.to(dev, non_blocking=True)
                sync = contextlib.nullcontext() if micro == tc["accum_steps"] - 1 or not info.enabled else net.no_sync()
                with sync:
                    with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        logits = fwd(video)
                    loss_sum = compute_loss(logits, labels)
                    if n_local == 0:
                        loss_sum = loss_sum * 0.0
                    correct = (logits.argmax(1) == labels).sum() if n_local else torch.zeros((), device=dev)
                    stats = torch.stack([torch.tensor(float(n_local), device=dev), loss_sum.detach().float(),
                                         correct.float(), (~torch.isfinite(loss_sum.detach())).float(),
                                         torch.tensor(float(skipped_local), device=dev)])
                    dist.all_reduce_sum(stats)  # one collective: count, loss, correct, non-finite, skipped
                    n_global = max(float(stats[0]), 1.0)
                    bad |= bool(stats[3] > 0)
                    # mean over the global micro-batch: DDP averages over ranks, hence the world_size factor
                    loss = loss_sum * (info.world_size / n_global / tc["accum_steps"])
                    scaler.scale(loss).backward()
                step_loss += float(stats[1])
                step_correct += float(stats[2])
                step_count += float(stats[0])
                counters["skipped_videos"] += int(stats[4])
            scaler.unscale_(optimizer)
            max_norm = tc["clip_grad"] if tc["clip_grad"] else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
            if precision != "fp16":
                bad |= not math.isfinite(grad_norm)
            if bad:
                optimizer.zero_grad(set_to_none=True)
                counters["bad_steps"] += 1
                counters["consecutive_bad"] += 1
                if precision == "fp16":
                    scaler.update()
            else:
                counters["consecutive_bad"] = 0
                scale_before = scaler.get_scale() if precision == "fp16" else None
                scaler.step(optimizer)
                scaler.update()
                if precision == "fp16" and scaler.get_scale() < scale_before:
                    counters["overflow_steps"] += 1
                if ema is not None:
                    ema.update(model)
                window["loss"] += step_loss
                window["correct"] += step_correct
                window["count"] += step_count
                window["norm"].append(grad_norm)
            step += 1
            batch_in_epoch += 1
            window["clips"] += int(step_count)
            window["time"] += time.perf_counter() - t_step
            if counters["consecutive_bad"] >= tc["max_bad_steps"]:
                log.write({"step": step, "event": "diverged", **counters})
                raise TrainingDiverged(f"{counters['consecutive_bad']} consecutive steps with a non-finite loss "
                                       f"or gradient (train.max_bad_steps={tc['max_bad_steps']}); stopping")
            if bar is not None:
                bar.update(1)
                if window["count"]:
                    bar.set_postfix(loss=f"{window['loss'] / window['count']:.3f}", lr=f"{lr:.2e}")
            if step % tc["log_every"] == 0 or step == total_steps or batch_in_epoch == steps_per_epoch:
                c = max(window["count"], 1.0)
                log.write({"step": step, "epoch": epoch + batch_in_epoch / steps_per_epoch,
                           "loss": window["loss"] / c if window["count"] else None,
                           "train_top1": 100.0 * window["correct"] / c if window["count"] else None,
                           "lr": lr, "grad_norm": sum(window["norm"]) / len(window["norm"]) if window["norm"] else None,
                           "clips_per_s": window["clips"] / max(window["time"], 1e-9),
                           "data_wait": window["wait"] / max(window["time"], 1e-9),
                           "skipped_videos": counters["skipped_videos"], "bad_steps": counters["bad_steps"],
                           "overflow_steps": counters["overflow_steps"]})
                window = {"loss": 0.0, "correct": 0.0, "count": 0.0, "clips": 0, "wait": 0.0, "time": 0.0, "norm": []}
            if tc["checkpoint_every"] and step % tc["checkpoint_every"] == 0 and batch_in_epoch < steps_per_epoch:
                save_checkpoint()
        del batches
        if batch_in_epoch >= steps_per_epoch:  # a whole epoch is done
            epoch, batch_in_epoch = epoch + 1, 0
            if val_set is not None and tc["eval_every"] and (epoch % tc["eval_every"] == 0 or step >= total_steps):
                validate()
            save_checkpoint()
    if bar is not None:
        bar.close()
    if batch_in_epoch:  # stopped by max_steps inside an epoch
        if val_set is not None and tc["eval_every"]:
            validate()
        save_checkpoint()

    # ---- outputs ---------------------------------------------------------------------------------------------
    digests = dist.all_gather_objects(weights_digest(model))
    summary = {"output_dir": str(out), "steps": step, "epochs": epoch + batch_in_epoch / max(steps_per_epoch, 1),
               "ranks_in_sync": len(set(digests)) == 1, "best_val_top1": best["top1"], "best_step": best["step"], **counters}
    if main:
        meta = {"training": {"steps": step, "seed": cfg["seed"], "best_val_top1": best["top1"]}}
        model.save_pretrained(out / "final", **meta)
        if ema is not None:
            _ema_copy(model, ema).save_pretrained(out / "final_ema", **meta)
        if (out / "checkpoints" / "best.pt").exists():
            best_model = _ema_copy(model, None)
            best_model.load_state_dict(ckpt.load(out / "checkpoints" / "best.pt")["model"])
            best_model.save_pretrained(out / "best", **meta)
        if plot_curves(out / "curves.png", log.records()):
            summary["curves"] = str(out / "curves.png")
    if cfg["data"]["test"] or datasets.get("test") is not None:
        test_model = model
        if main and (out / "checkpoints" / "best.pt").exists():
            model.load_state_dict(ckpt.load(out / "checkpoints" / "best.pt")["model"])
        dist.broadcast_state(model)  # the best weights of rank 0, without assuming a shared file system
        test_set = datasets.get("test") or build_datasets(cfg, model.data_config, ("test",), model.labels,
                                                                     model.cfg.num_classes)["test"]
        res = evaluate(test_model, test_set, aggregate=cfg["eval"]["aggregate"],
                       batch_size=cfg["eval"]["batch_size"], num_workers=_eval_workers(cfg),
                       out_dir=out / "test" if main else None, labels=model.labels,
                       video_key=cfg["eval"]["video_key"], progress=tc["progress"] and main, desc="test")
        summary["test"] = {k: res[k] for k in ("top1", "top5", "mean_class_accuracy", "count")}
        log.write({"step": step, "test_top1": res["top1"], "test_top5": res["top5"],
                   "test_mean_class_accuracy": res["mean_class_accuracy"], "test_count": res["count"]})
    log.write({"step": step, "event": "end", **{k: v for k, v in summary.items() if k != "test"}})
    log.close()
    dist.barrier()
    return summary


def weights_digest(model) -> str:
    """SHA-256 of the model's parameters and buffers (to check that every rank holds the same weights)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def clip_shape(model) -> tuple[int, int, int]:
    return model.cfg.num_frames, model.cfg.img_size, model.cfg.img_size


def _eval_workers(cfg: dict) -> int:
    w = cfg["eval"]["num_workers"]
    return cfg["data"]["num_workers"] if w is None else w


def _ema_copy(model, ema):
    """A separate model with the same config (and the EMA weights, if ``ema``)."""
    import copy

    clone = copy.deepcopy(model)
    if ema is not None:
        clone.load_state_dict(ema.shadow)
    return clone
