import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

# Tests import the stage modules from the project root.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def needs(name):
    """Skip when an env's package (or Java, for SciWorld) is missing on this machine."""
    if name == "babyai":
        pytest.importorskip("minigrid")
    if name == "sciworld":
        pytest.importorskip("scienceworld")
        if shutil.which("java") is None:
            pytest.skip("SciWorld needs java")


def interrupt_when(cmd, ready, env=None, timeout=240):
    """Start `cmd` (cwd = the project root), send it SIGINT as soon as `ready()` holds, and return (exit code,
    stderr). A job started in the background by a non-interactive shell (CI) inherits SIGINT ignored, and Python
    then installs no KeyboardInterrupt handler: the child gets the disposition a terminal gives it. Fails the test
    when the run ended before the signal came (nothing was interrupted)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    if proc.returncode == 0:
        pytest.fail(f"{cmd[1]} finished before the signal came: make the run longer")
    return proc.returncode, err
