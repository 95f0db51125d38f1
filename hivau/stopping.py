"""Stopping on Ctrl-C or SIGTERM: one process-wide flag the stages check between items, the child processes that end
with it, and the signal handlers that set it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

# the exit codes a shell gives a process killed by the signal, so scripts and schedulers read them the same way
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Stopped(BaseException):
    """Work ends here because a stop was asked for. Not a failure of the item at hand: a BaseException, so the
    per-item `except Exception` handlers that record reasoned failures let it through."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 1)

    def __reduce__(self):  # Dask sends a task's exception between processes
        return Stopped, (self.signum,)


_stop = threading.Event()
_signum: list[int] = []  # the signal that asked first
_activity: list[str] = ["start-up"]
_children: set[subprocess.Popen] = set()
_children_guard = threading.RLock()  # re-entrant: the signal handler takes it in the main thread, which may hold it


def stop_requested() -> bool:
    return _stop.is_set()


def check_stop() -> None:
    """Raise `Stopped` when a stop was asked for: called between items, so a stage ends at an item boundary."""
    if _stop.is_set():
        raise Stopped(_signum[0] if _signum else signal.SIGINT)


def stopped_by(exc: BaseException) -> Optional[Stopped]:
    """The stop behind `exc`, if one is: a `Stopped` or Prefect's TerminationSignal in its chain of causes, or any
    error raised once a stop was asked for. A signal interrupts whatever code runs, and that code may wrap what the
    handler raised (Python 3.11 turns an exception raised during a class body's `__set_name__`, as in a module
    being imported, into a RuntimeError)."""
    seen, link = set(), exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, Stopped):
            return link
        signum = _termination_signum(link)
        if signum is not None:
            return Stopped(signum)
        link = link.__cause__ or link.__context__
    if _stop.is_set():
        return Stopped(_signum[0] if _signum else signal.SIGINT)
    return None


def _termination_signum(exc: BaseException) -> Optional[int]:
    """The signal of Prefect's TerminationSignal (named, not imported: this module sits below Prefect)."""
    if type(exc).__name__ == "TerminationSignal" and getattr(exc, "signal", None) in EXIT_CODES:
        return exc.signal
    return None


def request_stop(signum: int = signal.SIGINT) -> None:
    """Ask every stage of this process to stop, and end the child processes (ffmpeg) now: their partial outputs
    are temporary files that are never counted."""
    if not _signum:
        _signum.append(signum)
    _stop.set()
    with _children_guard:
        children = list(_children)
    for proc in children:
        if proc.poll() is None:
            proc.kill()


def reset() -> None:
    """Clear the flag (a process that runs again after a stop, such as a test or a long-lived server)."""
    _stop.clear()
    _signum.clear()


def set_activity(text: str) -> None:
    """What the operation is doing now, for the message a stop prints (`cut: 120 of 1000 videos done`)."""
    _activity[0] = text


def activity() -> str:
    return _activity[0]


def run_child(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
    """`subprocess.run` that a stop ends at once: the child is killed and `Stopped` raised, so a killed ffmpeg is
    never read as a broken video."""
    check_stop()
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with _children_guard:
        _children.add(proc)
    try:
        if _stop.is_set():  # the stop came between the check and the registration
            proc.kill()
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    finally:
        with _children_guard:
            _children.discard(proc)
    check_stop()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _handler_over(previous, interrupt: bool) -> Callable[[int, object], None]:
    """The handler: stop this process's work, let Prefect's own SIGTERM handler (when it is the one replaced) mark
    the run, then interrupt the main thread with `Stopped` (with `interrupt`; else the main loop checks the flag)."""

    def handler(signum: int, frame) -> None:
        if signum == signal.SIGINT and _signum == [signal.SIGINT]:
            # a second Ctrl-C: leave at once (finished work is on disk; the lock is an flock the kernel releases)
            os.write(2, b"\nhivau: second Ctrl-C: exiting now\n")
            os._exit(EXIT_CODES[signum])
        request_stop(signum)
        if not interrupt:
            return
        if callable(previous) and previous is not signal.default_int_handler and not getattr(previous, "hivau", False):
            previous(signum, frame)  # Prefect's bridge raises TerminationSignal: the run is marked, then stops
        raise Stopped(signum)

    handler.hivau = True  # type: ignore[attr-defined]
    return handler


@contextmanager
def stop_on_signals(interrupt: bool = True) -> Iterator[None]:
    """SIGINT and SIGTERM stop the work inside: the flag is set, children are killed, and the main thread is
    interrupted (`interrupt=False`: not interrupted, for a loop that must end at a step boundary, such as a training
    step, and checks `stop_requested()`). Only the main thread can handle signals; elsewhere this does nothing.
    Nested uses (the CLI around a flow that installs it too) stop once.

    Inside a Prefect flow run, Prefect's own SIGTERM handler stays: a runner cancelling the run checks that it is
    installed before it asks for a clean cancellation. The TerminationSignal it raises sets the flag on its way out.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in EXIT_CODES}
    replaced = {s: h for s, h in previous.items() if not (s == signal.SIGTERM and _is_prefect_handler(h))}
    for s, handler in replaced.items():
        signal.signal(s, _handler_over(handler, interrupt))
    try:
        yield
    except BaseException as exc:
        stop = stopped_by(exc)
        if stop is not None:  # Prefect's handler stopped the main thread (maybe wrapped): now the rest of the process
            request_stop(stop.signum)
        raise
    finally:
        for s, handler in replaced.items():
            signal.signal(s, handler)


def _is_prefect_handler(handler) -> bool:
    return getattr(handler, "__module__", "").startswith("prefect.")


def stop_message(operation: str, resume: str, exc: Optional[Stopped] = None,
                 kept: str = "Finished work is kept on disk and the workspace lock is released.") -> str:
    """The lines a stopped command prints: what it was doing, what is kept, how to go on."""
    name = signal.Signals(exc.signum).name if exc else "a signal"
    return f"hivau: {operation} stopped by {name} during {activity()}. {kept}\nResume with: {resume}"


def resume_command() -> str:
    """This process's own command line: running it again resumes, since every stage skips finished work."""
    import shlex

    return shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]])
