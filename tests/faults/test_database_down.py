"""The database goes away mid-run: a clear message that says how to resume, and the
resumed run (after mongod is back) loses nothing and redoes nothing.

This test runs its own mongod (the session's stays up) and talks to it with pymongo."""
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import _mongod
from curate.data.loader import ImagePolicy, _load_batch
from curate.models.exact import ExactScore
from curate.volume import track_volume_growth

HERE = Path(__file__).parent
NAME = "db-down"


def _start(binary, dbpath, port):
    proc = subprocess.Popen([binary, "--dbpath", str(dbpath), "--port", str(port), "--bind_ip",
                             "127.0.0.1", "--nounixsocket"], stdout=open(dbpath / "log", "a"),
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("mongod did not start")


def _samples(client):
    doc = client["fiftyone"]["datasets"].find_one({"name": NAME})
    return client["fiftyone"][doc["sample_collection_name"]] if doc else None


def _scores(client) -> dict:
    coll = _samples(client)
    if coll is None:
        return {}
    return {d["filepath"]: d.get("volume_growth") for d in coll.find({}, {"filepath": 1, "volume_growth": 1})}


@pytest.mark.slow
@pytest.mark.skipif(_mongod._mongod_binary() is None, reason="needs a mongod binary")
def test_mongod_stops_during_scoring_then_resume(tmp_path, child_env):
    from pymongo import MongoClient

    dbpath = tmp_path / "db"
    dbpath.mkdir()
    port = _mongod._free_port()
    mongod = _start(_mongod._mongod_binary(), dbpath, port)
    client = MongoClient(f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=20000)
    env = dict(child_env, FIFTYONE_DATABASE_URI=f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=2000")
    cmd = [sys.executable, str(HERE / "_score.py"), NAME, "--make-digits", str(tmp_path / "png"),
           "--delay", "0.03"]
    try:
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "STARTED", child.stderr.read()[-3000:]
        deadline = time.time() + 120
        while time.time() < deadline and child.poll() is None:
            if sum(v is not None for v in _scores(client).values()) >= 6:
                break
            time.sleep(0.05)
        assert child.poll() is None, child.stderr.read()[-3000:]
        mongod.send_signal(signal.SIGTERM)  # the database is stopped under the run
        mongod.wait(30)
        out, err = child.communicate(timeout=120)
        assert child.returncode == 3, err[-3000:]
        message = out.split("DBERROR ", 1)[1]
        assert "lost the database" in message and "run the same command with the same settings" in message
        assert "sample(s) of this call were saved" in message

        mongod = _start(_mongod._mongod_binary(), dbpath, port)  # back, same data
        before = {k: v for k, v in _scores(client).items() if v is not None}
        assert 6 <= len(before) < 40
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        s = json.loads(out.stdout.split("SUMMARY ", 1)[1])
        assert (s["skipped"], s["scored"], s["failed"], s["resumed"]) == (len(before), 40 - len(before), 0, True)
        after = _scores(client)
        assert all(after[k] == v for k, v in before.items())  # nothing lost or rewritten
        # Every score equals an independent computation from the PNG files.
        paths = sorted(after)
        policy = ImagePolicy(size=(8, 8), channels=1)
        images = _load_batch(paths, paths, policy).images
        train = _load_batch(paths, [p for p in paths if "/train/" in p], policy).images
        want = track_volume_growth(ExactScore(train.to(torch.float64)), images, steps=2,
                                   dtype=torch.float64, divergence=None).log_growth.tolist()
        for p, w in zip(paths, want):
            assert after[p] == pytest.approx(w, rel=1e-12, abs=1e-12), p
    finally:
        client.close()
        if mongod.poll() is None:
            mongod.terminate()
            mongod.wait(30)
