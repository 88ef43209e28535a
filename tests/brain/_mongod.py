"""A throwaway mongod for the FiftyOne tests (the binary that ships with fiftyone-db).

``start()`` runs it on a free port with its data in a temporary folder and points
FiftyOne at it through FIFTYONE_DATABASE_URI, which child processes inherit. It must
run before anything imports fiftyone.
"""
import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _mongod_binary() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("fiftyone")
    if spec and spec.origin:
        cand = Path(spec.origin).parent / "db" / "bin" / "mongod"
        if cand.is_file():
            return str(cand)
    return shutil.which("mongod")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start() -> None:
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
    if os.environ.get("FIFTYONE_DATABASE_URI") or "fiftyone" in sys.modules:
        return  # already configured (by the user or an earlier conftest)
    binary = _mongod_binary()
    if binary is None:
        return  # FiftyOne will start its own from FIFTYONE_DATABASE_DIR
    dbpath = tempfile.mkdtemp(prefix="curate-mongod-")
    port = _free_port()
    log = open(os.path.join(dbpath, "mongod.log"), "w")
    proc = subprocess.Popen(
        [binary, "--dbpath", dbpath, "--port", str(port), "--bind_ip", "127.0.0.1",
         "--nounixsocket"], stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mongod exited with {proc.returncode}; see {dbpath}/mongod.log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("mongod did not start within 30 s")
    os.environ["FIFTYONE_DATABASE_URI"] = f"mongodb://127.0.0.1:{port}"

    def _stop():
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(dbpath, ignore_errors=True)

    atexit.register(_stop)
