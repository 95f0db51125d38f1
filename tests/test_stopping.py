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
