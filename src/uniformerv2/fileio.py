"""Writing files so that a crash never leaves a half-written one: ``atomic_write`` and its text and JSON forms."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path, write) -> Path:
    """Write through ``write(tmp_path)`` to a temporary file beside ``path``, fsync, then rename over ``path``.

    A reader sees the old file or the new one, never a partial one. The file gets the usual mode of a new
    file (0666 & ~umask), not the private mode of temporary files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    """``text`` (UTF-8) to ``path`` through :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path, obj, *, indent: int = 1, default=None) -> Path:
    """``obj`` as indented JSON with a final newline, through :func:`atomic_write`."""
    import json

    return atomic_write_text(path, json.dumps(obj, indent=indent, default=default) + "\n")


# ----------------------------------------------------------------------------------------------- JSON lines
def read_jsonl(path) -> list[dict]:
    """The complete records of a JSON-lines file, in order. A last line that a killed writer left without its
    newline (or that does not parse) is not a record and is left out."""
    import json

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b"\n")[:-1]:   # the piece after the last newline is incomplete by definition
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


class JsonLines:
    """An append-only JSON-lines file: each record is one ``write`` of one whole line, flushed at once, so a
    killed process loses nothing it has written and never leaves half a record (``read_jsonl`` skips a cut
    last line); ``fsync`` at most every ``sync_s`` seconds and on ``close`` (a power loss costs at most the
    last records, which a resumed run redoes)."""

    def __init__(self, path, sync_s: float = 1.0):
        import time

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab")
        self._sync_s, self._synced, self._clock = sync_s, time.monotonic(), time.monotonic

    def append(self, record: dict) -> None:
        import json

        self._f.write((json.dumps(record, separators=(",", ":")) + "\n").encode())
        self._f.flush()
        if self._clock() - self._synced >= self._sync_s:
            os.fsync(self._f.fileno())
            self._synced = self._clock()

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


# ----------------------------------------------------------------------------------------------- run records
class RunRecords:
    """Per-input status of a run over a list of inputs, kept beside its outputs so that the run can be resumed
    and spread over processes (ranks) that share the folder.

    ``folder/.parts/``:
      ``run.json``                what the run computes (its ``signature``), its ``settings`` (chosen by the
                                  first session, e.g. a batch size) and how many sessions it has had
      ``s0001-r000.jsonl``        records appended by rank 0 in session 1, one line per input once its outputs
                                  are written: ``{"index", "path", "status": "done" | "failed", "error"?, ...}``
      ``s0001-r000.end.json``     that rank's figures, written when it is through its share

    A session is one launch of the command, with any number of processes; each process only ever appends to its
    own file of the session, so nothing is shared while writing. The latest record of an input (highest session)
    is its status. ``barrier`` synchronises the processes of a session (a no-op for one process).
    """

    PARTS = ".parts"

    def __init__(self, folder, rank: int = 0, world: int = 1, barrier=None):
        self.folder, self.rank, self.world = Path(folder), int(rank), int(world)
        self.parts = self.folder / self.PARTS
        self._barrier = barrier or (lambda: None)
        self.session, self._log, self.settings = 0, None, {}

    # ------------------------------------------------------------ reading
    def _part_files(self, before: int | None = None) -> list[tuple[int, int, Path]]:
        import re

        out = []
        for p in self.parts.glob("s*-r*.jsonl") if self.parts.is_dir() else ():
            m = re.fullmatch(r"s(\d+)-r(\d+)\.jsonl", p.name)
            if m and (before is None or int(m[1]) < before):
                out.append((int(m[1]), int(m[2]), p))
        return sorted(out)

    def latest(self, before: int | None = None) -> dict[int, dict]:
        """``{input index: its latest record}`` over the sessions before ``before`` (default: all), each with
        ``attempts``: how many records the input has."""
        best: dict[int, dict] = {}
        counts: dict[int, int] = {}
        for _, _, path in self._part_files(before):
            for rec in read_jsonl(path):
                i = rec.get("index")
                if not isinstance(i, int):
                    continue
                counts[i] = counts.get(i, 0) + 1
                if i not in best or rec.get("session", 0) >= best[i].get("session", 0):
                    best[i] = rec
        for i, rec in best.items():
            rec["attempts"] = counts[i]
        return best

    def _read_run(self) -> dict | None:
        import json

        try:
            return json.loads((self.parts / "run.json").read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return {}

    def recorded_signature(self) -> dict:
        """The signature the folder's run was started with ({} when it holds none)."""
        return (self._read_run() or {}).get("signature", {})

    # ------------------------------------------------------------ a session
    def open(self, signature: dict, *, resume: bool = False, overwrite: bool = False,
             settings: dict | None = None, keep: tuple = ()) -> dict[int, dict]:
        """Start a session: check what the folder holds against ``signature`` (a dict of what decides the
        outputs), clear it with ``overwrite``, and return the latest record of every input done or failed in
        earlier sessions (empty unless ``resume``). Raises ``UserError`` when the folder holds a run and
        neither ``resume`` nor ``overwrite`` is given, or when ``resume`` meets a different signature.

        ``settings``: rank 0's proposal; the ``keep`` keys keep the value an earlier session chose. Every rank
        then reads the same ``self.settings``."""
        import json
        import shutil

        from .errors import UserError

        previous = self._read_run()
        if previous is not None and not overwrite:
            if not resume:
                n = len(self.latest())
                raise UserError(f"{self.folder} holds a previous run ({n} inputs recorded): --resume continues "
                                "it, --overwrite starts again")
            old = previous.get("signature", {})
            diff = sorted(k for k in set(old) | set(signature) if old.get(k) != signature.get(k))
            if diff:
                shown = ", ".join(f"{k}: {old.get(k)!r} then, {signature.get(k)!r} now" for k in diff[:4])
                raise UserError(f"{self.folder}: cannot resume a run with other settings ({shown}); "
                                "--overwrite starts again")
        self._barrier()
        if self.rank == 0:
            if overwrite and self.parts.exists():
                shutil.rmtree(self.parts)
            session = 1 + int((previous or {}).get("sessions", 0)) if not overwrite else 1
            chosen = dict(settings or {})
            if previous and not overwrite:
                chosen.update({k: v for k, v in previous.get("settings", {}).items() if k in keep})
            text = json.dumps({"signature": signature, "settings": chosen, "sessions": session}, indent=1) + "\n"
            atomic_write(self.parts / "run.json", lambda p: Path(p).write_text(text))
        self._barrier()
        run = self._read_run()
        self.session, self.settings = int(run["sessions"]), run.get("settings", {})
        done = self.latest(before=self.session) if resume else {}
        self._log = JsonLines(self.parts / f"s{self.session:04d}-r{self.rank:03d}.jsonl")
        return done

    def append(self, record: dict) -> None:
        """Record one input (after its outputs are written)."""
        self._log.append({**record, "session": self.session, "rank": self.rank})

    def close(self, figures: dict | None = None) -> None:
        """This process is through its share: its records are synced and its ``figures`` written."""
        import json

        if self._log is not None:
            self._log.close()
        text = json.dumps(figures or {}) + "\n"
        atomic_write(self.parts / f"s{self.session:04d}-r{self.rank:03d}.end.json", lambda p: Path(p).write_text(text))

    def wait_for_all(self, poll_s: float = 0.2) -> list[dict]:
        """(Rank 0) wait until every process of the session has closed; their figures, by rank. Polls the
        folder instead of a collective call, so that a rank far behind the others never hits a time-out."""
        import json
        import time

        ends = [self.parts / f"s{self.session:04d}-r{r:03d}.end.json" for r in range(self.world)]
        while not all(p.exists() for p in ends):
            time.sleep(poll_s)
        return [json.loads(p.read_text()) for p in ends]
