"""Benchmarks of our own code, one module per ``uniformerv2 bench`` subcommand: ``model`` (clips/s and peak
memory of inference or the trainer's step), ``pipeline`` (the training input pipeline), ``prepare`` (prepared
files per keyframe interval), ``inference`` (``predict`` with the default input workers against explicit
counts), ``decode`` (the sparse reader against decoding every frame), ``views`` (per-core decode rate of a
recipe's test views), ``memory`` (training memory per variant on the CPU), ``recipes`` (cores per GPU for every
shipped training recipe) and ``feed_demo`` (demo accuracy on prepared files). ``common`` holds what they share,
``videos`` the generated inputs.

What needs the official model code or a GPU session lives in ``benchmarks/`` beside the package; it imports
from here (``common``, ``model``, ``pipeline``).
"""
from .common import device_name, device_of, free_memory, header, threads, write_json
from .model import TABLE_HEAD, bench_model, compile_model, make_batch, measure, table_row

__all__ = ["TABLE_HEAD", "bench_model", "compile_model", "device_name", "device_of", "free_memory", "header",
           "make_batch", "measure", "table_row", "threads", "write_json"]
