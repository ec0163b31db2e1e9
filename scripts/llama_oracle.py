"""
The demo's offline oracle: a gguf served by llama.cpp (`python -m llama_cpp.server`, OpenAI-compatible) on a free
local port, for select.py. demo.sh starts it before scripts/paper.sh and stops it at the end; paper.sh waits for it
(its ORACLE_READY knob) just before the oracle's first request.

    URL=$(python scripts/llama_oracle.py start --gguf cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
              --alias smollm2-135m-instruct --dir out/demo/logs)       # prints http://127.0.0.1:PORT/v1 at once
    python scripts/llama_oracle.py wait --dir out/demo/logs     # returns once it answers (exit 1: why, on stdout)
    python scripts/llama_oracle.py stop --dir out/demo/logs

`start` returns at once: when llama-cpp-python is missing, the server process first builds it (pip compiles
llama.cpp: minutes on 2 cores, niced, once: pip caches the wheel), so the build runs while the offline stages do.
`serve` is that process in the foreground. Logs in --dir: llama_cpp_install.log, oracle_server.log; the server's
URL and process id in oracle_server.json.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_START_S = 120  # from the server's launch (the build done) to its first answer

p = argparse.ArgumentParser(description="the demo's oracle: a gguf served by llama.cpp")
p.add_argument("command", choices=["start", "serve", "wait", "stop"],
               help="start: serve in the background and print the URL; serve: in the foreground; wait: until it "
                    "answers; stop: end it")
p.add_argument("--dir", required=True, help="folder of its logs and of oracle_server.json (demo.sh: $OUT/logs)")
# ---- start / serve
p.add_argument("--gguf", help="the model file to serve")
p.add_argument("--alias", help="the model name the server answers to (select.py --model)")
p.add_argument("--threads", type=int, default=1, help="llama.cpp threads (the demo's 2 cores also train)")
p.add_argument("--port", type=int, default=0, help="serve: port on 127.0.0.1 (start picks a free one)")
p.add_argument("--package", default="llama-cpp-python[server]==0.3.36",
               help="what pip installs when llama_cpp.server is missing (constrained by requirements.txt)")
args = p.parse_args()
os.makedirs(args.dir, exist_ok=True)
STATE = os.path.join(args.dir, "oracle_server.json")
SERVER_LOG = os.path.join(args.dir, "oracle_server.log")
INSTALL_LOG = os.path.join(args.dir, "llama_cpp_install.log")
# a clean environment: the server reads settings from environment variables too (pydantic-settings), so a
# variable of the demo's (CACHE, MODEL, ...) would change the server
CLEAN_ENV = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}


def server_importable():
    return subprocess.run([sys.executable, "-c", "import llama_cpp.server"], env=CLEAN_ENV,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def alive(pid):
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # an exited child its parent has not reaped yet still takes signals
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def answers(url):
    try:
        urllib.request.urlopen(url.rstrip("/") + "/models", timeout=5).close()
        return True
    except OSError:
        return False


if args.command == "start":
    if not (args.gguf and args.alias):
        sys.exit("scripts/llama_oracle.py start: --gguf and --alias are required")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    if not server_importable():
        print(f"installing llama-cpp-python in the background (log: {INSTALL_LOG})", file=sys.stderr)
    # a session of its own: the build goes on when the caller is interrupted (pip then caches the wheel)
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", "--dir", args.dir, "--gguf", args.gguf,
                             "--alias", args.alias, "--threads", str(args.threads), "--port", str(port),
                             "--package", args.package], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    with open(STATE, "w") as f:
        json.dump({"url": url, "pid": proc.pid}, f)
    print(url)

elif args.command == "serve":
    if not (args.gguf and args.alias and args.port):
        sys.exit("scripts/llama_oracle.py serve: --gguf, --alias and --port are required")
    if os.path.exists(SERVER_LOG):
        os.remove(SERVER_LOG)  # `wait` reads its appearance as "the build is over, the server is starting"
    if not server_importable():
        with open(INSTALL_LOG, "w") as log:
            subprocess.run(["nice", "-n", "19", sys.executable, "-m", "pip", "install", "-c",
                            os.path.join(ROOT, "requirements.txt"), args.package], stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
        if not server_importable():
            sys.exit(f"llama-cpp-python could not be installed (see {INSTALL_LOG})")
    log = os.open(SERVER_LOG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.execve(sys.executable, [sys.executable, "-m", "llama_cpp.server", "--model", args.gguf, "--model_alias",
                               args.alias, "--n_ctx", "4096", "--n_threads", str(args.threads), "--host", "127.0.0.1",
                               "--port", str(args.port)], CLEAN_ENV)

elif args.command == "wait":  # exit 0 once it answers; else exit 1 with the reason on stdout (paper.sh warns it)
    if not os.path.exists(STATE):
        print(f"no llama.cpp oracle was started (no {STATE})")
        sys.exit(1)
    state = json.load(open(STATE))
    launched, said = None, False
    while not answers(state["url"]):
        if not alive(state["pid"]):
            print(f"the llama.cpp oracle did not start (see {SERVER_LOG})" if os.path.exists(SERVER_LOG) else
                  f"llama-cpp-python could not be installed (see {INSTALL_LOG})")
            sys.exit(1)
        if os.path.exists(SERVER_LOG):
            launched = launched or time.time()
            if time.time() - launched > SERVER_START_S:
                print(f"the llama.cpp oracle did not start (see {SERVER_LOG})")
                sys.exit(1)
        elif not said:
            print("waiting for the llama-cpp-python build ...", file=sys.stderr, flush=True)
            said = True
        time.sleep(1)

else:  # stop
    if os.path.exists(STATE):
        pid = json.load(open(STATE))["pid"]
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
        os.remove(STATE)
