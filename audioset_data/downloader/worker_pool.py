"""Killable worker processes for clip tasks: :class:`ClipWorkerPool`.

A fetch that a server holds (bytes trickling in, never silent long enough for a socket timeout)
cannot be interrupted from inside: the pool runs each task in a worker process and kills the
worker's process group, with the ffmpeg it started, when the task passes its time limit, or
when it stalls (makes no progress for the stall timeout).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audioset_data.errors import DownloadError

from .failures import ClipFailure

logger = logging.getLogger(__name__)

_FRAME = struct.Struct("!Q")


def _frame(data: bytes) -> bytes:
    return _FRAME.pack(len(data)) + data


def _read_frame(fh: Any) -> bytes | None:
    """One length-prefixed message from a blocking file, or None when the writer is gone."""
    head = fh.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (n,) = _FRAME.unpack(head)
    data = fh.read(n)
    return data if len(data) == n else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Frames:
    """Splits bytes read from a non-blocking pipe into length-prefixed messages."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        while len(self.buf) >= _FRAME.size:
            (n,) = _FRAME.unpack_from(self.buf)
            if len(self.buf) < _FRAME.size + n:
                break
            out.append(bytes(self.buf[_FRAME.size: _FRAME.size + n]))
            del self.buf[: _FRAME.size + n]
        return out


class _SharedPickler(pickle.Pickler):
    """Pickles ``shared`` objects as references the workers already hold."""

    def __init__(self, fh: Any, shared: tuple[Any, ...]):
        super().__init__(fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._shared = shared

    def persistent_id(self, obj: Any) -> int | None:
        for i, s in enumerate(self._shared):
            if obj is s:
                return i
        return None


class _SharedUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, shared: tuple[Any, ...]):
        super().__init__(fh)
        self._shared = shared

    def persistent_load(self, pid: Any) -> Any:
        return self._shared[pid]


class _KeepRecords(logging.Handler):
    """Collects a worker's log records so they travel back with the task's result."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)


def _watch_parent(parent: int) -> None:
    """End this process's group (a worker and its ffmpeg) when its parent is gone."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)


def _serve_tasks(tasks: int, results: int, shared: tuple[Any, ...], keep: _KeepRecords) -> None:
    """A forked worker: run each task read from ``tasks``, answer on ``results``."""
    with os.fdopen(tasks, "rb") as inp:
        while (frame := _read_frame(inp)) is not None:
            fn, args, kwargs = _SharedUnpickler(io.BytesIO(frame), shared).load()
            try:
                reply: tuple[str, Any] = ("ok", fn(*args, **kwargs))
            except Exception as exc:  # noqa: BLE001 - sent back to the caller's future
                reply = ("error", exc)
            records, keep.records = keep.records, []
            try:
                data = pickle.dumps((*reply, records), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # noqa: BLE001 - an unpicklable result must still answer
                data = pickle.dumps(("error", DownloadError(f"result cannot be sent: {exc!r}"),
                                     records))
            _write_all(results, _frame(data))


@dataclass
class _Child:
    pid: int
    tasks: int  # write end
    results: int  # read end
    frames: _Frames = field(default_factory=_Frames)
    task: int | None = None
    deadline: float = float("inf")
    #: bytes read and CPU seconds of every process of its group seen during the task
    seen: dict[int, tuple[int, float]] = field(default_factory=dict)
    #: the last progress: when, and the totals of ``seen`` then
    mark: tuple[float, int, float] = (0.0, 0, 0.0)


#: Bytes a task must read, or CPU seconds it must use (a tenth of the stall timeout when that
#: is less), within the stall timeout.
STALL_BYTES = 1024
STALL_CPU_S = 1.0


def _group_usage(groups: set[int]) -> dict[int, dict[int, tuple[int, float]]] | None:
    """Bytes read (``rchar``: files, pipes and sockets) and CPU seconds of every process in
    the process ``groups``, by group and pid; None where ``/proc`` cannot tell (not Linux)."""
    out: dict[int, dict[int, tuple[int, float]]] = {g: {} for g in groups}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return None
    for pid in entries:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            group = int(fields[2])
            if group not in out:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / tick
            with open(f"/proc/{pid}/io", "rb") as fh:
                rchar = next(int(line.split()[1]) for line in fh if line.startswith(b"rchar:"))
        except (OSError, ValueError, IndexError, StopIteration):
            continue  # gone meanwhile, or not ours to read
        out[group][int(pid)] = (rchar, cpu)
    return out


class _StallWatch:
    """Stops a task that makes no progress: fewer than :data:`STALL_BYTES` read and less than
    :data:`STALL_CPU_S` (or a tenth of ``timeout``) of CPU used by its worker's process group
    (the worker and its ffmpeg) in ``timeout`` seconds. A server that trickles a byte a second
    never goes silent long enough for a socket timeout; this ends it long before the task's
    time limit."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.interval = max(0.05, min(1.0, timeout / 4))
        self.min_cpu = min(STALL_CPU_S, timeout / 10)
        self.works = True

    def start(self, child: _Child) -> None:
        """A task starts on ``child``: its baseline is taken at the next look."""
        child.seen = {}
        child.mark = (0.0, 0, 0.0)

    def stalled(self, busy: list[_Child], now: float) -> list[_Child]:
        """The busy children whose task made no progress for ``timeout`` seconds."""
        usage = _group_usage({c.pid for c in busy}) if self.works else None
        if usage is None:
            if self.works:
                logger.debug("no /proc here: stalled clips end at their time limit only")
            self.works = False
            return []
        out = []
        for child in busy:
            child.seen.update(usage.get(child.pid, {}))
            read = sum(r for r, _ in child.seen.values())
            cpu = sum(c for _, c in child.seen.values())
            since, read0, cpu0 = child.mark
            # the first look only takes the baseline (a worker's counts include its earlier
            # tasks); then progress moves the mark, and a mark left alone too long is a stall
            if not since or read - read0 >= STALL_BYTES or cpu - cpu0 >= self.min_cpu:
                child.mark = (now, read, cpu)
            elif now - since >= self.timeout:
                out.append(child)
        return out


def _hub_main() -> None:
    """The process behind a :class:`ClipWorkerPool` (``python -c``; reads stdin, writes
    stdout): it imports and warms up the fetcher once, then forks the workers from itself
    (one thread, so forking is safe), hands them tasks, kills a worker's process group at the
    time limit and forks a fresh one. It ends every worker and exits when stdin closes."""
    import selectors

    out = os.dup(1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the replies
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; it ends us
    from_parent = _Frames()
    frames: list[bytes] = []
    while not frames:  # unbuffered: what follows the first message stays in from_parent
        data = os.read(0, 1 << 16)
        if not data:
            return
        frames = from_parent.feed(data)
    workers, time_limit, stall_timeout, shared, level = pickle.loads(frames[0])  # noqa: S301
    stall = _StallWatch(stall_timeout) if stall_timeout else None
    next_check = float("inf")
    keep = _KeepRecords()
    root = logging.getLogger()
    root.handlers[:] = [keep]
    root.setLevel(level)
    for obj in shared:
        prepare = getattr(obj, "_prepare_worker", None)
        if callable(prepare):
            prepare()
    keep.records = []
    hub = os.getpid()
    children: dict[int, _Child] = {}  # by results fd
    queue_: deque[tuple[int, bytes]] = deque()
    sel = selectors.DefaultSelector()
    os.set_blocking(0, False)
    sel.register(0, selectors.EVENT_READ)
    queue_.extend(pickle.loads(f) for f in frames[1:])  # noqa: S301 - our parent's pipe

    def send(kind: str, task: int, payload: bytes | None = None) -> None:
        _write_all(out, _frame(pickle.dumps((kind, task, payload),
                                            protocol=pickle.HIGHEST_PROTOCOL)))

    def fork() -> _Child:
        task_r, task_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                os.setpgid(0, 0)
                for fd in (0, out, task_w, res_r, *[c.tasks for c in children.values()],
                           *children):
                    os.close(fd)
                threading.Thread(target=_watch_parent, args=(hub,), daemon=True).start()
                _serve_tasks(task_r, res_w, shared, keep)
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        os.close(task_r)
        os.close(res_w)
        child = _Child(pid, task_w, res_r)
        children[res_r] = child
        sel.register(res_r, selectors.EVENT_READ)
        return child

    def end(child: _Child) -> int:
        """Kill a worker's group, reap it, forget it; return its exit status."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        _, status = os.waitpid(child.pid, 0)
        sel.unregister(child.results)
        os.close(child.results)
        os.close(child.tasks)
        del children[child.results]
        return os.waitstatus_to_exitcode(status)

    def fail(task: int, reason: str, detail: str) -> None:
        send("done", task, pickle.dumps(("error", ClipFailure(reason, detail), [])))

    def dispatch() -> None:
        while queue_:
            idle = next((c for c in children.values() if c.task is None), None)
            if idle is None:
                if len(children) >= workers:
                    return
                idle = fork()
            task, payload = queue_.popleft()
            idle.task = task
            idle.deadline = time.monotonic() + time_limit if time_limit else float("inf")
            if stall is not None:
                stall.start(idle)
            send("start", task)
            try:
                _write_all(idle.tasks, _frame(payload))
            except OSError:
                code = end(idle)
                fail(task, "unknown", f"the worker process died (exit {code})")

    try:
        while True:
            now = time.monotonic()
            for child in [c for c in children.values() if c.deadline <= now]:
                task = child.task
                end(child)
                fail(task, "timeout", f"the clip was stopped at the time limit of "
                                      f"{time_limit:g} s (its worker and ffmpeg killed)")
            busy = [c for c in children.values() if c.task is not None]
            if stall is not None and busy and now >= next_check:
                for child in stall.stalled(busy, now):
                    task = child.task
                    end(child)
                    fail(task, "stalled", f"the clip stalled: less than {STALL_BYTES} bytes "
                                          f"arrived in {stall.timeout:g} s (its worker and "
                                          "ffmpeg stopped; --stall-timeout)")
                next_check = now + stall.interval
            dispatch()
            soonest = min((c.deadline for c in children.values()), default=float("inf"))
            if stall is not None and stall.works and any(
                    c.task is not None for c in children.values()):
                next_check = min(next_check, now + stall.interval)
                soonest = min(soonest, next_check)
            for key, _ in sel.select(None if soonest == float("inf")
                                     else max(0.0, soonest - time.monotonic())):
                fd = key.fd
                try:
                    data = os.read(fd, 1 << 20)
                except BlockingIOError:
                    continue
                if fd == 0:
                    if not data:
                        return
                    for frame in from_parent.feed(data):
                        queue_.append(pickle.loads(frame))  # noqa: S301 - our parent's pipe
                    continue
                child = children[fd]
                if not data:  # the worker died
                    task = child.task
                    code = end(child)
                    if task is not None:
                        fail(task, "unknown", f"the worker process died (exit {code})")
                    continue
                for frame in child.frames.feed(data):
                    send("done", child.task, frame)  # type: ignore[arg-type]
                    child.task, child.deadline = None, float("inf")
    finally:
        for child in list(children.values()):
            end(child)


class ClipWorkerPool(Executor):
    """An executor whose tasks run in worker processes that are killed at a time limit.

    One helper process imports yt-dlp and prepares the ``shared`` objects (the fetcher) once,
    then forks ``workers`` worker processes from itself. A task still running after
    ``time_limit`` seconds is ended by killing its worker's process group (the worker and any
    ffmpeg it started); its future then holds a transient ``timeout`` :class:`ClipFailure`,
    and a fresh worker takes the next task. With ``stall_timeout``, a task whose process group
    reads almost nothing and uses almost no CPU for that long (a server that trickles bytes)
    is ended the same way, as ``stalled``, long before its time limit (on Linux, where
    ``/proc`` tells; elsewhere the time limit alone applies). A worker that dies gives a
    transient ``unknown`` failure. Tasks that pass a ``shared`` object refer to the workers'
    own copy (it is not sent again), so a worker keeps its yt-dlp instance from one clip to
    the next.

    The processes ignore Ctrl-C (the pool's owner decides), and end when the owner process
    disappears. Tasks must be importable functions (they are pickled by reference); their log
    records are replayed in this process.
    """

    def __init__(self, workers: int, *, time_limit: float | None = None,
                 stall_timeout: float | None = None, shared: tuple[Any, ...] = ()):
        if workers < 1:
            raise DownloadError(f"a worker pool needs at least one worker, not {workers}")
        if time_limit is not None and not time_limit > 0:
            raise DownloadError(f"time_limit={time_limit!r} must be a positive number of seconds")
        if stall_timeout is not None and not stall_timeout > 0:
            raise DownloadError(f"stall_timeout={stall_timeout!r} must be a positive number of "
                                "seconds")
        self.workers = workers
        self.time_limit = time_limit
        self.stall_timeout = stall_timeout
        self.shared = tuple(shared)
        package_parent = str(Path(__file__).resolve().parents[1])
        code = (
            "import importlib.util, sys\n"
            f"p = {package_parent!r}\n"
            "s = importlib.util.find_spec('audioset_data')\n"
            "if s is None or not str(s.origin).startswith(p): sys.path.insert(0, p)\n"
            "from audioset_data.downloader.worker_pool import _hub_main\n"
            "_hub_main()\n"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._lock = threading.Lock()  # the futures table
        self._write_lock = threading.Lock()  # the helper's stdin
        self._futures: dict[int, Future] = {}
        self._ids = itertools.count()
        self._accepting = True
        level = logging.getLogger("audioset_data").getEffectiveLevel()
        self._send(pickle.dumps((workers, time_limit, stall_timeout, self.shared, level)))
        self._reader = threading.Thread(target=self._read, name="audioset-worker-pool",
                                        daemon=True)
        self._reader.start()

    def _send(self, data: bytes) -> None:
        self._proc.stdin.write(_frame(data))  # type: ignore[union-attr]
        self._proc.stdin.flush()  # type: ignore[union-attr]

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)`` in a worker process."""
        buf = io.BytesIO()
        _SharedPickler(buf, self.shared).dump((fn, args, kwargs))
        fut: Future = Future()
        with self._lock:
            if not self._accepting:
                raise RuntimeError("cannot submit to a worker pool after shutdown")
            if self._proc.poll() is not None:
                raise DownloadError(f"the worker processes are gone (exit {self._proc.poll()})")
            task = next(self._ids)
            self._futures[task] = fut
        try:  # not under self._lock: the reader thread must keep draining the replies
            with self._write_lock:
                self._send(pickle.dumps((task, buf.getvalue())))
        except OSError as exc:
            with self._lock:
                self._futures.pop(task, None)
            raise DownloadError(f"the worker processes are gone: {exc}") from exc
        return fut

    def _read(self) -> None:
        fh = self._proc.stdout
        try:
            while (frame := _read_frame(fh)) is not None:
                kind, task, payload = pickle.loads(frame)  # noqa: S301 - our own helper
                with self._lock:
                    fut = self._futures.get(task)
                if fut is None:
                    continue
                if kind == "start":
                    fut.set_running_or_notify_cancel()
                    continue
                with self._lock:
                    del self._futures[task]
                outcome, value, records = pickle.loads(payload)  # noqa: S301
                for rec in records:
                    log = logging.getLogger(rec.name)
                    if log.isEnabledFor(rec.levelno):
                        log.handle(rec)
                if fut.cancelled():
                    continue
                if fut.running() is False and not fut.set_running_or_notify_cancel():
                    continue
                if outcome == "ok":
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
        finally:
            code = self._proc.wait()
            with self._lock:
                left, self._futures = self._futures, {}
            for fut in left.values():
                if fut.cancel() or fut.done():
                    continue
                fut.set_exception(ClipFailure(
                    "unknown", "the worker pool was shut down" if not self._accepting
                    else f"the worker processes exited (code {code})"))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking tasks. ``wait=False`` ends every worker at once (running tasks end with
        a failure) and returns; ``wait=True`` lets running and, unless ``cancel_futures``,
        queued tasks finish first."""
        with self._lock:
            self._accepting = False
            pending = list(self._futures.values())
        if cancel_futures or not wait:
            for fut in pending:
                fut.cancel()
        if wait:
            for fut in pending:
                if not fut.cancelled():
                    with contextlib.suppress(BaseException):
                        fut.exception()
        with self._write_lock, contextlib.suppress(OSError):
            self._proc.stdin.close()  # type: ignore[union-attr]
        if wait:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._kill()
            self._reader.join()
        else:
            timer = threading.Timer(2.0, self._kill)
            timer.daemon = True
            timer.start()

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)




__all__ = ["ClipWorkerPool"]
