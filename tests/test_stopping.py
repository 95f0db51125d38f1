"""The stop flag on its own: a stop kills the child process it finds running (its thread gets `Stopped`, never a
failed command), every later check raises, and `Stopped` crosses process boundaries whole."""

import pickle
import signal
import subprocess
import sys
import textwrap


def test_a_stop_kills_the_running_child_and_every_later_check_raises():
    # in a fresh interpreter: the flag is process-wide and must not stay set in the test session
    script = textwrap.dedent("""
        import signal, threading, time
        from hivau.stopping import Stopped, check_stop, request_stop, run_child, stop_requested

        outcome = {}
        def cut():
            started = time.monotonic()
            try:
                run_child(["sleep", "30"], timeout=60)
                outcome["result"] = "finished"
            except Stopped as exc:
                outcome["result"] = f"stopped {exc.signum} after {time.monotonic() - started:.1f}"
        worker = threading.Thread(target=cut)
        worker.start()
        time.sleep(0.5)
        request_stop(signal.SIGTERM)
        worker.join(10)
        try:
            check_stop()
            later = "no"
        except Stopped as exc:
            later = exc.exit_code
        print(outcome["result"], stop_requested(), later)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result, _, seconds, flag, later = out.stdout.split()[1:]
    assert result == str(int(signal.SIGTERM)) and float(seconds) < 5 and flag == "True" and later == "143"


def test_stopped_survives_pickling():
    from hivau.stopping import Stopped

    again = pickle.loads(pickle.dumps(Stopped(signal.SIGTERM)))
    assert isinstance(again, Stopped) and again.signum == signal.SIGTERM and again.exit_code == 143


def test_a_signal_that_lands_where_python_wraps_the_exception_still_ends_as_a_stop():
    """Python 3.11 turns what a signal handler raises inside a class body's `__set_name__` (a module being imported)
    into a RuntimeError; the command still says it was stopped and how to resume, and exits 143 (a SIGTERM that
    landed there once made `hivau propose` end with a traceback and exit 1)."""
    script = textwrap.dedent("""
        import os, signal, time
        import typer
        from hivau.cli import stoppable

        app = typer.Typer()

        @app.command()
        @stoppable("demo")
        def demo():
            class Field:
                def __set_name__(self, owner, name):
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(5)  # the handler runs here, at the next bytecode

            class Engine:
                logger = Field()

            print("not reached")

        app()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 143, out.stdout + out.stderr
    assert "hivau: demo stopped by SIGTERM" in out.stderr and "Resume with:" in out.stderr
    assert "Traceback" not in out.stderr and "not reached" not in out.stdout


def test_the_stop_behind_an_error_is_found_in_its_causes_or_by_the_flag():
    from prefect.exceptions import TerminationSignal

    from hivau.stopping import stopped_by

    try:
        try:
            raise TerminationSignal(signal=signal.SIGTERM)
        except TerminationSignal as exc:
            raise RuntimeError("Error calling __set_name__") from exc
    except RuntimeError as wrapped:
        assert stopped_by(wrapped).exit_code == 143
    assert stopped_by(ValueError("a real error")) is None  # no stop asked for in this process
