"""The training loop, top to bottom: ``train(config, output_dir, resume=False) -> summary dict``.

Run directory::

    config.yaml        the resolved config (defaults <- file <- overrides)
    metrics.jsonl      one JSON object per logged step ({"step": ..., "loss": ..., "lr": ...}) and per validation
    checkpoints/       step_XXXXXXXX.pt (last ``keep_last``), best.pt (best validation top-1)
    final/             the last weights as a model directory (``uniformerv2.from_pretrained``)
    final_ema/         the EMA weights, with ``train.ema_decay``
    best/              the best-validation weights, when validation ran
    curves.png         loss / LR / val top-1 against the step (needs matplotlib)

Reading order: ``train`` (build, resume, loop over epochs, save, test), then ``train_one_epoch``,
``train_step`` (one optimiser step), ``validate``, ``save_checkpoint``, ``save_outputs`` and ``final_test``.

One optimiser step consumes one global batch of ``train.batch_size`` videos, split over processes and
``accum_steps`` micro-steps. Everything a checkpoint holds is a ``TrainState`` (``engine/state.py``): weights,
optimiser, schedule, scaler, EMA, every RNG and the position inside the epoch, so on CPU a resumed run
ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from . import distributed as dist
from ..data.device_augment import ToDevice
from .config import dump, load_config
from .data import build_datasets, make_augment, make_train_loader
from .evaluate import config_views, evaluate, evaluate_videos, write_outputs
from .metrics import plot_curves
from .optim import EMA, build_optimizer
from .runlog import MetricsLog, StepWindow
from .schedule import WarmupCosine, scaled_lr
from .state import TrainState


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
    config's ``data.pipeline`` applied to its data config (``factory.model_for_config``)."""
    from ..factory import model_for_config

    return model_for_config(cfg)


def cached_datasets(cfg: dict, cache, splits=("train", "val", "test")) -> dict:
    """The datasets of the resolved config ``cfg`` reading every video decoded into ``cache`` (a
    ``data.ClipCache``), filled now, so that loader workers forked later find the frames in memory."""
    model = build_model(cfg)  # for its data config and labels
    datasets = build_datasets(cfg, model.data_config, splits, model.labels, model.cfg.num_classes, cache=cache)
    for ds in datasets.values():
        ds.preload()
    return datasets


def prepare_for_training(model, cfg: dict):
    """The training speed/memory variants (``accel.optimize``): lean MLPs, activation checkpointing."""
    from ..accel import optimize

    return optimize(model, for_inference=False, grad_checkpointing=cfg["train"]["grad_checkpointing"])


@dataclass
class StepResult:
    """One optimiser step, summed over the global batch (every rank and micro-step)."""
    loss: float       # summed cross-entropy
    correct: float    # top-1 hits
    count: float      # clips that decoded
    grad_norm: float  # before clipping
    lr: float
    ok: bool          # False: a non-finite loss or gradient somewhere; the update was skipped


@dataclass
class Run:
    """What the loop uses besides the ``TrainState``: rebuilt from the config at every start, never saved."""
    cfg: dict
    out: Path
    info: dist.DistInfo
    datasets: dict                  # "train", and "val" / "test" when there are
    loader: torch.utils.data.DataLoader
    sampler: dist.TrainSampler
    train_step: Callable[..., StepResult]  # ``train_step`` bound to this run's forward and settings
    precision: str
    total_steps: int
    steps_per_epoch: int
    log: MetricsLog
    bar: object = None              # tqdm progress bar (rank 0, ``train.progress``)

    @property
    def validates(self) -> bool:
        return self.datasets.get("val") is not None and bool(self.cfg["train"]["eval_every"])


# ------------------------------------------------------------------------------------------------ the loop
def train(config, output_dir, resume: bool = False, overrides=None, datasets: dict | None = None) -> dict:
    """Train as ``config`` says (dict, YAML path or shipped name) into ``output_dir``; returns a summary.

    ``overrides``: dotted ``key=value`` strings or a nested dict on top of ``config``. ``datasets``:
    ready-made {"train": ..., "val": ..., "test": ...} datasets instead of the config's list files.
    """
    cfg = load_config(config, overrides)
    tc = cfg["train"]
    info = dist.setup(tc["device"])
    try:
        state, run = setup(cfg, Path(output_dir), info, datasets)
        resume_or_start(state, run, resume)
        while state.step < run.total_steps:
            train_one_epoch(state, run)
            if state.batch_in_epoch >= run.steps_per_epoch:  # a whole epoch is done
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                if run.validates and (state.epoch % tc["eval_every"] == 0 or state.step >= run.total_steps):
                    validate(state, run)
                save_checkpoint(state, run)
        if run.bar is not None:
            run.bar.close()
        if state.batch_in_epoch:  # stopped by max_steps inside an epoch
            if run.validates:
                validate(state, run)
            save_checkpoint(state, run)
        summary = save_outputs(state, run)
        if cfg["data"]["test"] or run.datasets.get("test") is not None:
            summary["test"] = final_test(state, run)
        run.log.write({"step": state.step, "event": "end", **{k: v for k, v in summary.items() if k != "test"}})
        run.log.close()
        dist.barrier()
        return summary
    finally:
        dist.cleanup()


def setup(cfg: dict, out: Path, info: dist.DistInfo, given: dict | None) -> tuple[TrainState, Run]:
    """Build the model, the data, the optimiser, schedule, scaler and EMA, and the (DDP, compiled) forward."""
    tc, dev = cfg["train"], info.device
    if info.is_main:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump(cfg))
    dist.barrier()

    seed_everything(cfg["seed"])  # same initial weights on every rank
    model = build_model(cfg)
    datasets = dict(given) if given else build_datasets(cfg, model.data_config, ("train", "val"), model.labels,
                                                        model.cfg.num_classes)
    loader, sampler = make_train_loader(datasets["train"], cfg, info)
    steps_per_epoch = sampler.batches_per_epoch
    total_steps = tc["epochs"] * steps_per_epoch
    if tc["max_steps"] is not None:
        total_steps = min(total_steps, tc["max_steps"])

    model.to(dev)
    if tc["sync_bn"] and info.enabled:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    prepare_for_training(model, cfg)
    amp_dtype, precision = autocast_dtype(tc["precision"], dev)
    base_lr = scaled_lr(tc["lr"], tc["batch_size"], tc["lr_scaling"], tc["lr_ref_batch"])
    optimizer = build_optimizer(model, base_lr, tc["weight_decay"], tc["betas"], tc["eps"], tc["layer_decay"])
    state = TrainState(
        model, optimizer,
        WarmupCosine(optimizer, base_lr, total_steps, round(tc["warmup_epochs"] * steps_per_epoch), tc["min_lr"],
                     tc["warmup_start_lr"]),
        torch.amp.GradScaler(dev.type, enabled=precision == "fp16"),
        EMA(model, tc["ema_decay"]) if tc["ema_decay"] else None)

    ddp = None
    if info.enabled:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    forward = ddp or model
    augment = make_augment(cfg, model.data_config, datasets["train"], dev, model.cfg.num_classes)
    step = functools.partial(train_step, forward=torch.compile(forward) if tc["compile"] else forward, ddp=ddp,
                             device=dev, augment=augment, accum_steps=tc["accum_steps"], amp_dtype=amp_dtype,
                             clip_grad=tc["clip_grad"])
    log = MetricsLog(out / "metrics.jsonl", info.is_main, tc["tensorboard"])
    return state, Run(cfg, out, info, datasets, loader, sampler, step, precision, total_steps, steps_per_epoch, log)


def resume_or_start(state: TrainState, run: Run, resume: bool) -> None:
    """Continue from the newest checkpoint (``resume``), or seed this rank and log the start of a new run;
    then print the run's shape and open the progress bar."""
    cfg, tc, info, out = run.cfg, run.cfg["train"], run.info, run.out
    saved, path = ckpt.load_latest(out / "checkpoints") if resume else (None, None)
    if saved is not None:
        state.load_state_dict(saved)
        run.log.truncate_after(state.step)
        if info.is_main:
            print(f"resumed from {path} at step {state.step} (epoch {state.epoch}, "
                  f"batch {state.batch_in_epoch}/{run.steps_per_epoch})")
    else:
        if resume and info.is_main:
            print(f"no checkpoint in {out / 'checkpoints'}; starting from scratch")
        seed_everything(cfg["seed"] * 1000 + info.rank)  # dropout etc.: per rank, rank 0 = one-process run
        run.log.truncate_after(-1)
        run.log.write({"step": 0, "event": "start", "world_size": info.world_size, "device": str(info.device),
                       "precision": run.precision, "global_batch": tc["batch_size"], "accum_steps": tc["accum_steps"],
                       "micro_batch": run.sampler.micro_batch, "lr_scaling": tc["lr_scaling"],
                       "lr_ref_batch": tc["lr_ref_batch"], "config_lr": tc["lr"], "base_lr": state.scheduler.base_lr,
                       "steps_per_epoch": run.steps_per_epoch, "total_steps": run.total_steps,
                       "train_videos": len(run.datasets["train"])})
    if info.is_main:
        print(f"{len(run.datasets['train'])} training videos, {run.steps_per_epoch} steps/epoch, {run.total_steps} "
              f"steps; global batch {tc['batch_size']} = {info.world_size} proc x {tc['accum_steps']} accum x "
              f"{run.sampler.micro_batch}; lr {state.scheduler.base_lr:g} (scaling {tc['lr_scaling']}); "
              f"{run.precision} on {info.device}")
        if tc["progress"]:
            from tqdm import tqdm
            run.bar = tqdm(total=run.total_steps, initial=state.step, desc="train", dynamic_ncols=True)
    state.model.train()


def train_one_epoch(state: TrainState, run: Run) -> None:
    """Optimiser steps until the epoch's last global batch (or the run's last step); logs and checkpoints."""
    tc, per_epoch = run.cfg["train"], run.steps_per_epoch
    run.datasets["train"].set_epoch(state.epoch)
    run.sampler.set_epoch(state.epoch, state.batch_in_epoch)  # a resumed epoch goes on at its next batch
    window = StepWindow()
    batches = window.timed(run.loader)
    while state.batch_in_epoch < per_epoch and state.step < run.total_steps:
        t0 = time.perf_counter()
        result = run.train_step(state, batches)
        window.add(result, seconds=time.perf_counter() - t0)
        if state.counters["consecutive_bad"] >= tc["max_bad_steps"]:
            run.log.write({"step": state.step, "event": "diverged", **state.counters})
            raise TrainingDiverged(f"{state.counters['consecutive_bad']} consecutive steps with a non-finite loss "
                                   f"or gradient (train.max_bad_steps={tc['max_bad_steps']}); stopping")
        window.show(run.bar)
        if state.step % tc["log_every"] == 0 or state.step == run.total_steps or state.batch_in_epoch == per_epoch:
            run.log.write(window.flush(state, per_epoch))
        if tc["checkpoint_every"] and state.step % tc["checkpoint_every"] == 0 and state.batch_in_epoch < per_epoch:
            save_checkpoint(state, run)


def train_step(state: TrainState, batches: Iterator[dict], *, forward, device: torch.device, augment=None,
               accum_steps: int = 1, amp_dtype: torch.dtype | None = None, clip_grad: float | None = None,
               ddp=None) -> StepResult:
    """One optimiser step over ``accum_steps`` micro-batches from ``batches``; advances ``state`` by one step.

    ``augment(batch, epoch) -> (video, labels)`` puts a batch on the device as the model takes it
    (``engine.data.make_augment``: the training augmentation there with ``data.augment_on=device``, mixup);
    None: move the batch as it is. Labels are class indices, or soft targets with mixup.
    Each micro-step's loss is its summed cross-entropy over every rank's clips, divided by that count and
    by ``accum_steps``: the mean over the global batch when no video failed to decode, whatever the split
    over processes and micro-steps. ``forward``: the model, or its DDP / compiled wrapper; ``ddp``: the
    DDP wrapper under torchrun (gradients are all-reduced on the last micro-step only). A step whose loss
    or gradient is not finite on some rank changes no weight and counts in ``bad_steps`` /
    ``consecutive_bad``; in fp16 the ``GradScaler`` skips overflowing steps itself (``overflow_steps``).
    """
    model, optimizer, scaler, counters = state.model, state.optimizer, state.scaler, state.counters
    world, fp16 = dist.rank_world()[1], scaler.is_enabled()
    lr = state.scheduler.set_step(state.step)
    optimizer.zero_grad(set_to_none=True)
    step_loss = step_correct = step_count = 0.0  # over the global batch
    bad = False
    augment = augment or ToDevice(device)
    for micro in range(accum_steps):
        batch = next(batches)
        skipped_local = len(batch.get("skipped", []))
        if batch["video"] is None or len(batch["label"]) == 0:  # all of this rank's share failed to decode:
            # a zero-weight dummy clip keeps this rank in step with the others (DDP, all-reduce)
            video = torch.zeros(1, 3, *clip_shape(model), device=device)
            labels, n_local = torch.zeros(1, dtype=torch.long, device=device), 0
        else:  # to the device (augmented there with data.augment_on=device; mixed with data.mixup)
            video, labels = augment(batch, state.epoch)
            n_local = len(labels)
        last = micro == accum_steps - 1
        with contextlib.nullcontext() if ddp is None or last else ddp.no_sync():
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = forward(video)
            loss_sum = compute_loss(logits, labels)
            if n_local == 0:
                loss_sum = loss_sum * 0.0
            hard = labels if labels.ndim == 1 else labels.argmax(1)  # soft targets (mixup): the top class
            correct = (logits.argmax(1) == hard).sum() if n_local else torch.zeros((), device=device)
            stats = torch.stack([torch.tensor(float(n_local), device=device), loss_sum.detach().float(),
                                 correct.float(), (~torch.isfinite(loss_sum.detach())).float(),
                                 torch.tensor(float(skipped_local), device=device)])
            # one collective: the micro-step's clip count, loss, top-1 hits, non-finite flags, skipped videos
            n_global, loss_global, correct_global, non_finite, skipped = dist.all_reduce_sum(stats).tolist()
            bad |= non_finite > 0
            # mean over the global micro-batch: DDP averages over ranks, hence the world factor
            loss = loss_sum * (world / max(n_global, 1.0) / accum_steps)
            scaler.scale(loss).backward()
        step_loss += loss_global
        step_correct += correct_global
        step_count += n_global
        counters["skipped_videos"] += int(skipped)

    scaler.unscale_(optimizer)
    params = [p for p in model.parameters() if p.requires_grad]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip_grad or float("inf"))) if params else 0.0
    ok = not bad and (fp16 or math.isfinite(grad_norm))
    if ok:
        counters["consecutive_bad"] = 0
        scale_before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        if fp16 and scaler.get_scale() < scale_before:
            counters["overflow_steps"] += 1
        if state.ema is not None:
            state.ema.update(model)
    else:
        optimizer.zero_grad(set_to_none=True)
        counters["bad_steps"] += 1
        counters["consecutive_bad"] += 1
        if fp16:
            scaler.update()
    state.step += 1
    state.batch_in_epoch += 1
    return StepResult(step_loss, step_correct, step_count, grad_norm, lr, ok)


def validate(state: TrainState, run: Run) -> dict:
    """Evaluate on the validation set (the EMA weights with ``eval.use_ema``), log it, keep ``best.pt``."""
    cfg, model, main = run.cfg, state.model, run.info.is_main
    eval_model = _ema_copy(model, state.ema) if state.ema is not None and cfg["eval"]["use_ema"] else model
    res = evaluate(eval_model, run.datasets["val"], aggregate=cfg["eval"]["aggregate"],
                   batch_size=cfg["eval"]["batch_size"], num_workers=_eval_workers(cfg),
                   progress=cfg["train"]["progress"] and main, desc="val")
    model.train()
    run.log.write({"step": state.step, "epoch": state.epoch, "val_top1": res["top1"], "val_top5": res["top5"],
                   "val_mean_class_accuracy": res["mean_class_accuracy"], "val_count": res["count"],
                   "val_skipped": len(res["skipped"])})
    if main:
        print(f"step {state.step} epoch {state.epoch}: val top-1 {res['top1']:.2f} top-5 {res['top5']:.2f} "
              f"({res['count']} videos)")
    if state.best["top1"] is None or res["top1"] > state.best["top1"]:
        state.best = {"top1": res["top1"], "step": state.step}
        if main:
            ckpt.save(run.out / "checkpoints" / "best.pt",
                      {"model": eval_model.state_dict(), "step": state.step, "top1": res["top1"]})
    return res


def save_checkpoint(state: TrainState, run: Run) -> None:
    """``checkpoints/step_<step>.pt`` (rank 0 writes; every rank gives its RNG state), keeping ``keep_last``."""
    saved = state.state_dict()
    if run.info.is_main:
        ckpt.save_step(run.out / "checkpoints", state.step, saved, keep_last=run.cfg["train"]["keep_last"])


# ------------------------------------------------------------------------------------------------ outputs
def save_outputs(state: TrainState, run: Run) -> dict:
    """``final/``, ``final_ema/``, ``best/`` and ``curves.png`` (rank 0); returns the run's summary."""
    model, out, counters = state.model, run.out, state.counters
    digests = dist.all_gather_objects(weights_digest(model))
    summary = {"output_dir": str(out), "steps": state.step,
               "epochs": state.epoch + state.batch_in_epoch / max(run.steps_per_epoch, 1),
               "ranks_in_sync": len(set(digests)) == 1, "best_val_top1": state.best["top1"],
               "best_step": state.best["step"], **counters}
    if run.info.is_main:
        meta = {"training": {"steps": state.step, "seed": run.cfg["seed"], "best_val_top1": state.best["top1"]}}
        model.save_pretrained(out / "final", **meta)
        if state.ema is not None:
            _ema_copy(model, state.ema).save_pretrained(out / "final_ema", **meta)
        if (out / "checkpoints" / "best.pt").exists():
            best_model = _ema_copy(model, None)
            best_model.load_state_dict(ckpt.load(out / "checkpoints" / "best.pt")["model"])
            best_model.save_pretrained(out / "best", **meta)
        if plot_curves(out / "curves.png", run.log.records()):
            summary["curves"] = str(out / "curves.png")
    return summary


def final_test(state: TrainState, run: Run) -> dict:
    """The multi-view test of the best-validation weights (the last ones without validation); loads them.
    The config's test list runs through the inference engine (``evaluate_videos``: the numbers ``predict`` and
    ``eval`` give); a test dataset the caller built (e.g. clips decoded into memory) through ``evaluate``."""
    cfg, model, out, main = run.cfg, state.model, run.out, run.info.is_main
    if main and (out / "checkpoints" / "best.pt").exists():
        model.load_state_dict(ckpt.load(out / "checkpoints" / "best.pt")["model"])
    dist.broadcast_state(model)  # the best weights of rank 0, without assuming a shared file system
    common = dict(aggregate=cfg["eval"]["aggregate"], video_key=cfg["eval"]["video_key"],
                  progress=cfg["train"]["progress"] and main)
    if "test" in run.datasets:
        res = evaluate(model, run.datasets["test"], batch_size=cfg["eval"]["batch_size"],
                       num_workers=_eval_workers(cfg), out_dir=out / "test" if main else None, labels=model.labels,
                       desc="test", **common)
    else:
        from ..inference import VideoClassifier
        from .data import _list_path, labelled_items

        d = cfg["data"]
        items, _ = labelled_items(_list_path(d["root"], d["test"]), root=d["root"], sep=d["separator"],
                                  model_labels=model.labels, list_labels="model")  # read as training reads lists
        clf = VideoClassifier(model, device=run.info.device, dtype=torch.float32)
        res = evaluate_videos(clf, items, views=config_views(cfg, clf.data), workers=_eval_workers(cfg),
                              backend=d["backend"], timeout=d["timeout"], frame_template=d["frame_template"],
                              frame_start_index=d["frame_start_index"], **common)
        if main:
            write_outputs(out / "test", res, model.labels)
    run.log.write({"step": state.step, "test_top1": res["top1"], "test_top5": res["top5"],
                   "test_mean_class_accuracy": res["mean_class_accuracy"], "test_count": res["count"]})
    return {k: res[k] for k in ("top1", "top5", "mean_class_accuracy", "count")}


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
