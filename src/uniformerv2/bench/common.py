"""What every benchmark shares: the device, thread and TF32 settings (restored after each measurement), the
header line, the load average, and writing a result as JSON."""
from __future__ import annotations

import contextlib
import os
import platform
from datetime import date
from pathlib import Path

import torch

from ..errors import UserError
from ..fileio import atomic_write_json


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mb(device) -> float | None:
    """Peak memory in MiB: allocated on CUDA (since the last reset), the process's peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)
    except ImportError:
        return None


@contextlib.contextmanager
def tf32(enabled: bool):
    """TF32 matmuls/convolutions on CUDA inside the block (fp32 rows), restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def threads(n: int | None):
    """``torch.set_num_threads(n)`` inside the block (None: unchanged)."""
    saved = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def device_of(device) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:N" or a torch.device; None: CUDA when there is one) as a torch.device,
    checked: a CUDA device that this machine lacks is a ``UserError``."""
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        except RuntimeError:
            raise UserError(f"device must be cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and (not torch.cuda.is_available()
                               or (dev.index is not None and dev.index >= torch.cuda.device_count())):
        raise UserError(f"device {device} is not available on this machine "
                        f"({torch.cuda.device_count()} CUDA devices)")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    return dev


def device_name(dev) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"


def header() -> str:
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'unknown'})"
    cores = "" if torch.cuda.is_available() else f", {torch.get_num_threads()} threads"
    return f"device: {dev}{cores}; torch {torch.__version__}; {date.today().isoformat()}"


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (None where the system has none)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def load_text() -> str:
    load = load_average()
    return " ".join(f"{x:.1f}" for x in load) if load else "?"


def environment() -> dict:
    """The fields every JSON result carries: what ran it, where and when."""
    return {"torch": torch.__version__, "date": date.today().isoformat(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average": load_average()}


def write_json(path, result: dict) -> Path:
    """``result`` as indented JSON at ``path`` (written whole or not at all)."""
    return atomic_write_json(path, result, default=_plain)


def _plain(x):
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON: {type(x).__name__}")


def free_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
