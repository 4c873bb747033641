"""The paper's datasets from their official annotation files: ``build_lists`` (``uniformerv2 lists``).

``build_lists(dataset, annotations, videos, output)`` reads the annotation files as distributed, finds each
video under the ``videos`` folders and writes to ``output``: ``train.csv``, ``val.csv``, ``test.csv`` (the
labelled test split, else the validation list: the test views run on it), ``labels.txt`` (the class names of
the label indices), ``missing.txt`` (``split,key,expected file``) and ``report.json`` (rows read, videos
found, missing, undecodable with ``check``, duplicates, rows dropped and why). The shipped recipes read these
names under ``data.root``.

Which split and version a file holds is read from its content or name, never from the order of the files.
The class order is ``LABEL_LISTS[dataset]``, the class list of the dataset's presets (one table).
"""
from __future__ import annotations

from ...errors import UserError
from .common import Rows, VideoIndex, finish, summary

# The written class order of each dataset: the label list of its presets (model.presets), by class name.
LABEL_LISTS = {
    "kinetics400": "kinetics400_uniformerv2_order",
    "kinetics600": "kinetics600",
    "kinetics700": "kinetics700",
    "kinetics710": "kinetics710_uniformerv2_order",
    "sthv1": "something_something_v1",
    "sthv2": "something_something_v2",
    "mit": "moments_in_time",
    "activitynet": "activitynet",
    "hacs": "activitynet",
}
DATASETS = tuple(LABEL_LISTS)

__all__ = ["DATASETS", "LABEL_LISTS", "build_lists", "summary"]


def build_lists(dataset: str, annotations, videos, output, *, check: bool = False, skip_bad: bool = False,
                workers: int = 0, timeout: float = 60.0, progress: bool = False) -> dict:
    """Write the lists of ``dataset`` from its official ``annotations`` (paths) with the videos under
    ``videos`` (a folder or several) into the folder ``output``; returns the report (also ``report.json``).

    ``check``: decode every found video (first and last frame, ``data.check``, in ``workers`` processes) and
    leave out the undecodable ones. ``skip_bad``: malformed rows are counted and left out instead of stopping
    the run with a ``UserError`` naming ``file:line``."""
    from ...labels import shipped_labels

    if dataset not in LABEL_LISTS:
        raise UserError(f"unknown dataset {dataset!r}; choose {', '.join(DATASETS)}")
    annotations = [str(a) for a in annotations]
    if not annotations:
        raise UserError("no annotation files given")
    videos = [videos] if isinstance(videos, (str, bytes)) or hasattr(videos, "__fspath__") else list(videos)
    index, rows = VideoIndex(videos), Rows(skip_bad)
    labels_name = LABEL_LISTS[dataset]
    if dataset.startswith("kinetics"):
        from .kinetics import parse
    elif dataset in ("sthv1", "sthv2"):
        from .something import parse
    elif dataset == "mit":
        from .moments import parse
    else:
        from .activitynet import parse
    parsed = parse(dataset, annotations, index, rows, labels_name)
    return finish(dataset, parsed, rows, output, videos=videos, labels=shipped_labels(labels_name), check=check,
                  workers=workers, timeout=timeout, progress=progress)
