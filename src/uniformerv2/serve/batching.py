"""Cross-request batching for the service: decoding in worker processes, one model thread.

    request -> Job (a file on disk + the ViewSpec of its options)
            -> DecodePool: worker processes run ``pipeline.video_chunks`` (decode, sample, crop), one job each
            -> the model thread: chunks of every request go into one ``pipeline.Batcher``, whose forward passes
               hold exactly ``max_batch`` views (padded with zeros), run when full, ``max_wait_ms`` after the
               oldest waiting view arrived, or at once when no more views are on their way
            -> ``Engine._collect``: the ``VideoOutput`` of a job once its last chunk is through -> its callback

At a fixed pass shape a view's numbers do not depend on the other views of its pass (``pipeline``), so a
request's answer does not depend on what it was batched with.

Failure isolation: a worker that dies (killed, crashed in a decoder) fails the job it held and is replaced; a
cancelled job (timeout, client gone) is taken out of the decode queue, a worker decoding it stops at its next
chunk, and its chunks not yet in a forward pass are dropped. Decoded views waiting for the model are bounded
(``READY_PASSES`` passes' worth): beyond, no worker takes a new video and a long video's next chunk waits, so a
long video with windows is never all in memory.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_ready
from typing import Callable

import torch

from ..inference.engine import Engine, Failure
from ..inference.pipeline import Batcher, Chunk, RunStats, ViewSpec, decoder_threads, model_threads, video_chunks

READY_PASSES = 2       # decoded views waiting for the model thread, in passes, before the workers are held back


@dataclass(eq=False)
class Job:
    """One request's video: ``path`` on this machine, its ``spec``; ``done(result)`` is called once, from a
    service thread, with a ``VideoOutput``, a ``Failure`` or an exception (not when cancelled)."""
    path: str
    spec: ViewSpec
    done: Callable[[object], None]
    id: int = 0
    cancelled: bool = False
    finished: bool = False
    submitted: float = field(default_factory=time.monotonic)

    def finish(self, result) -> None:
        if self.finished or self.cancelled:
            return
        self.finished = True
        try:
            self.done(result)
        except RuntimeError:     # the event loop is gone (the server is stopping)
            pass


def _worker_main(conn) -> None:
    """A decode worker: jobs in, chunks out; after each chunk that is not the last, wait for 'more' or 'stop'."""
    torch.set_num_threads(1)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if msg is None:
            return
        _, job_id, path, spec = msg
        gen = video_chunks(job_id, path, spec)
        for chunk in gen:
            chunk.exception = None
            if chunk.views is not None:
                chunk.views = chunk.views.numpy()
            conn.send(("chunk", job_id, chunk))
            if chunk.last:
                break
            if conn.recv() != "more":
                break
        gen.close()


@dataclass(eq=False)
class _Worker:
    process: object
    conn: object
    job: Job | None = None
    owed: bool = False        # sent a non-last chunk and waits for 'more' / 'stop'
    started: bool = False     # said it is ready (its imports are done)


class DecodePool:
    """``workers`` decode processes fed by one dispatcher thread; decoded chunks go to ``deliver(job, chunk)``.
    While ``has_room()`` is false no worker gets a new video and a long video's next chunk waits."""

    def __init__(self, workers: int, deliver, has_room):
        from ..data.video import pool_context

        self.size = max(1, int(workers))
        self.deliver, self.has_room = deliver, has_room
        self.ctx = pool_context()
        if self.ctx.get_start_method() == "forkserver":    # workers fork from a server that has the imports done
            self.ctx.set_forkserver_preload(["uniformerv2.serve.batching"])
        self.queue: deque[Job] = deque()
        self.lock = threading.Lock()
        self.workers: list[_Worker] = []
        self.replaced = 0
        self._wake_r, self._wake_w = self.ctx.Pipe(duplex=False)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="uniformerv2-decode", daemon=True)

    # ------------------------------------------------------------------ control (any thread)
    def start(self, timeout: float = 300.0) -> None:
        """Start the workers and wait until each one is ready."""
        self.workers = [self._spawn() for _ in range(self.size)]
        for w in self.workers:
            if not w.conn.poll(timeout):
                raise RuntimeError(f"a decode worker did not start in {timeout:g} s")
            w.conn.recv()
            w.started = True
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self.lock:
            self.queue.append(job)
        self.wake()

    def cancel(self, job: Job) -> None:
        with self.lock:
            try:
                self.queue.remove(job)
            except ValueError:
                pass
        self.wake()

    def wake(self) -> None:
        try:
            self._wake_w.send(None)
        except OSError:
            pass

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers]

    def busy(self) -> int:
        return sum(w.job is not None for w in self.workers)

    def waiting(self) -> int:
        return len(self.queue)

    def stop(self) -> None:
        self._stop = True
        self.wake()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for w in self.workers:
            try:
                w.conn.send(None)
            except OSError:
                pass
        for w in self.workers:
            w.process.join(timeout=2)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=2)

    # ------------------------------------------------------------------ the dispatcher thread
    def _spawn(self) -> _Worker:
        ours, theirs = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker_main, args=(theirs,), name="uniformerv2-serve-decode", daemon=True)
        p.start()
        theirs.close()
        return _Worker(p, ours)

    def _loop(self) -> None:
        while not self._stop:
            try:
                self._step()
            except Exception as e:  # noqa: BLE001 - the dispatcher must outlive any one message
                print(f"uniformerv2 serve: decode dispatcher: {type(e).__name__}: {e}", file=sys.stderr)
                time.sleep(0.05)

    def _step(self) -> None:
        self._assign()
        self._resume_owed()
        busy = [w.conn for w in self.workers if w.job is not None or not w.started]
        sentinels = {w.process.sentinel: w for w in self.workers}
        ready = wait_ready([self._wake_r, *busy, *sentinels], timeout=0.05)
        for obj in ready:
            if obj is self._wake_r:
                while self._wake_r.poll():
                    self._wake_r.recv()
        for w in list(self.workers):
            if w.conn in ready:
                self._receive(w)
        for s, w in sentinels.items():
            if s in ready and w in self.workers:
                self._died(w)

    def _assign(self) -> None:
        if not self.has_room():
            return
        for w in self.workers:
            if w.job is not None or not w.started:
                continue
            with self.lock:
                job = self.queue.popleft() if self.queue else None
            if job is None:
                return
            if job.cancelled:
                continue
            w.job, w.owed = job, False
            try:
                w.conn.send(("job", job.id, job.path, job.spec))
            except OSError:
                self._died(w)

    def _resume_owed(self) -> None:
        for w in self.workers:
            if w.owed and w.job is not None and (w.job.cancelled or self.has_room()):
                w.owed = False
                try:
                    w.conn.send("stop" if w.job.cancelled else "more")
                except OSError:
                    self._died(w)
                    continue
                if w.job.cancelled:
                    w.job = None

    def _receive(self, w: _Worker) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            self._died(w)
            return
        if msg[0] == "ready":
            w.started = True
            return
        chunk = msg[2]
        job = w.job
        if chunk.views is not None:
            chunk.views = torch.from_numpy(chunk.views)
        if chunk.last:
            w.job = None
        else:
            w.owed = True
        if job is not None and not job.cancelled:
            self.deliver(job, chunk)

    def _died(self, w: _Worker) -> None:
        if w not in self.workers:
            return
        w.process.join(timeout=1)
        code = w.process.exitcode
        self.workers[self.workers.index(w)] = self._spawn() if not self._stop else w
        self.replaced += 1
        try:
            w.conn.close()
        except OSError:
            pass
        if w.job is not None:
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            w.job.finish(RuntimeError(f"the decoding process died ({how}) while reading this video"))


class Scheduler:
    """Views of concurrent jobs in shared forward passes of ``max_batch`` views on ``engine``.

    ``on_pass(filled, size, seconds)`` hears about every forward pass (for metrics)."""

    def __init__(self, engine: Engine, *, workers: int = 1, max_batch: int = 8, max_wait_ms: float = 5.0,
                 on_pass=None):
        self.engine = engine
        self.max_batch, self.max_wait = int(max_batch), max(0.0, float(max_wait_ms)) / 1000
        self.on_pass = on_pass or (lambda filled, size, seconds: None)
        self.ready: queue.Queue = queue.Queue()
        self.ready_views = 0     # views of the chunks in ``ready``
        self._count_lock = threading.Lock()
        self.pool = DecodePool(workers, self._chunk_ready, lambda: self.ready_views < READY_PASSES * self.max_batch)
        self.batcher = Batcher(self._forward, self.max_batch, pin=engine.device.type == "cuda")
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._thread = threading.Thread(target=self._loop, name="uniformerv2-model", daemon=True)
        self.passes = 0

    # ------------------------------------------------------------------ control (any thread)
    def start(self) -> None:
        self.pool.start()
        self._thread.start()

    def stop(self) -> None:
        self.ready.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.pool.stop()

    def warm_up(self, views: int | None = None) -> None:
        """One forward pass of a zero batch at the service's shape (run before the first request)."""
        data, t = self.engine.data, int(self.engine.model.num_frames)
        done = threading.Event()
        zeros = torch.zeros(self.max_batch, 3, t, data.crop_size, data.crop_size, dtype=torch.uint8)
        self.call(lambda: self.engine.forward_views(zeros), lambda _: done.set())
        done.wait()

    def submit(self, path: str, spec: ViewSpec, done) -> Job:
        if spec.decoder_threads is None:    # the engine's share: the usable cores among the workers
            spec = dataclasses.replace(spec, decoder_threads=decoder_threads(self.pool.size))
        job_id = next(self._ids)

        def finished(result):
            self.jobs.pop(job_id, None)     # however it ended (a worker that died included)
            done(result)

        job = Job(os.fspath(path), spec, finished, id=job_id)
        self.jobs[job.id] = job
        self.pool.submit(job)
        return job

    def cancel(self, job: Job) -> None:
        if job.finished:
            return
        job.cancelled = True
        self.jobs.pop(job.id, None)
        self.pool.cancel(job)

    def call(self, fn, done) -> None:
        """Run ``fn()`` on the model thread between forward passes; ``done(result or exception)``."""
        self.ready.put(("call", fn, done))

    # ------------------------------------------------------------------ the model thread
    def _chunk_ready(self, job: Job, chunk: Chunk) -> None:
        with self._count_lock:
            self.ready_views += chunk.size
        self.ready.put(("chunk", job, chunk))

    def _forward(self, stage: torch.Tensor):
        filled = min(self.batcher.size, self.batcher.pending)
        t = time.perf_counter()
        out = self.engine.forward_views(stage)
        self.passes += 1
        self.on_pass(filled, self.batcher.size, time.perf_counter() - t)
        return out

    def _loop(self) -> None:
        parts: dict[int, list] = {}
        stats = RunStats()
        oldest = None          # when the oldest view waiting in the batcher arrived
        with model_threads(self.pool.size):
            while True:
                timeout = None if not self.batcher.pending else self._wait_s(oldest)
                try:
                    item = self.ready.get(timeout=timeout)
                except queue.Empty:
                    try:
                        self._finish(self.batcher.flush(), parts, stats)
                    except Exception as e:  # noqa: BLE001 - a failed pass fails the jobs in it, not the service
                        self._fail_batch(e, parts)
                    oldest = None
                    continue
                if item is None:
                    return
                self.pool.wake()     # room in the ready queue: a held-back worker may go on
                if item[0] == "call":
                    _, fn, done = item
                    try:
                        result = fn()
                    except Exception as e:  # noqa: BLE001 - handed to the caller
                        result = e
                    done(result)
                    continue
                _, job, chunk = item
                with self._count_lock:
                    self.ready_views -= chunk.size
                if job.cancelled or job.finished:
                    parts.pop(job.id, None)
                    continue
                if chunk.error is not None:
                    parts.pop(job.id, None)
                    self.jobs.pop(job.id, None)
                    job.finish(Failure(chunk.path, chunk.error))
                    continue
                parts.setdefault(job.id, [])
                if not self.batcher.pending:
                    oldest = time.monotonic()
                try:
                    self._finish(self.batcher.add(chunk), parts, stats)
                except Exception as e:  # noqa: BLE001 - a failed pass fails the jobs in it, not the service
                    self._fail_batch(e, parts)
                    oldest = None
                    continue
                if not self.batcher.pending:
                    oldest = None

    def _wait_s(self, oldest: float) -> float:
        """How long a partly filled pass may still wait: until ``max_wait`` after its oldest view, and not at all
        when no more views are on their way (nothing decoding, waiting for a worker, or decoded)."""
        if self.ready.empty() and not self.pool.busy() and not self.pool.waiting():
            return 0.0
        return max(0.0, oldest + self.max_wait - time.monotonic())

    def _finish(self, done: list, parts: dict, stats: RunStats) -> None:
        for index, out in Engine._collect(done, parts, stats):
            job = self.jobs.pop(index, None)
            if job is not None:
                job.finish(out)
        stale = [i for i in parts if i not in self.jobs]    # jobs that ended early: their last chunk never comes
        if stale:
            held = {entry[0].index for entry in self.batcher.queue}
            for index in stale:
                if index not in held:
                    del parts[index]

    def _fail_batch(self, error: Exception, parts: dict) -> None:
        for entry in self.batcher.queue:
            job = self.jobs.pop(entry[0].index, None)
            parts.pop(entry[0].index, None)
            if job is not None:
                job.finish(error)
        self.batcher.queue.clear()
        self.batcher.pending = 0
