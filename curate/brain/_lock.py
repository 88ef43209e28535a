"""A lock on one dataset's run records, held in the MongoDB that stores the dataset.

FiftyOne keeps a dataset's field schema and its brain runs in one document that it
writes back whole (``dataset.save()``); two processes that add fields or register
runs at the same time would each write back their own copy and drop the other's.
Every change curate makes to that document happens under :func:`dataset_lock`,
after a reload, so concurrent runs (other fields, other processes, other machines
sharing ``FIFTYONE_DATABASE_URI``) never erase each other's records.

The lock is a document ``{_id: "dataset:<id>"}`` in the ``curate_locks``
collection: inserting it takes the lock (the unique ``_id`` makes that atomic).
A holder that was killed leaves it behind; it is taken over when its process is
gone (same host) or it is older than ``stale_s``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import socket
import time
import uuid

COLLECTION = "curate_locks"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def _refresh(dataset) -> None:
    """See the other processes' fields and runs before changing them.

    A soft reload keeps the sample objects a caller holds usable; only when another
    process changed the field schema is the dataset reloaded in full."""
    dataset._reload(hard=False)
    stored = {f.name for f in dataset._doc.sample_fields if not f.name.startswith("_")}
    if stored != set(dataset.get_field_schema()):
        dataset._reload(hard=True)


@contextlib.contextmanager
def dataset_lock(dataset, *, timeout_s: float = 120.0, stale_s: float = 60.0):
    """Hold the run-record lock of ``dataset`` (a FiftyOne Dataset); reloads it first.

    Raises:
        TimeoutError: another live process held the lock for ``timeout_s``.
    """
    import fiftyone.core.odm as foo
    from pymongo.errors import DuplicateKeyError

    coll = foo.get_db_conn()[COLLECTION]
    key = f"dataset:{dataset._doc.id}"
    me = {"_id": key, "token": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid()}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            coll.insert_one(dict(me, at=_now()))
            break
        except DuplicateKeyError:
            held = coll.find_one({"_id": key})
            if held is not None:
                dead = held.get("host") == me["host"] and not _alive(int(held.get("pid", -1)))
                old = (_now() - held["at"]).total_seconds() > stale_s
                if dead or old:  # its holder was killed inside the lock
                    coll.delete_one({"_id": key, "token": held["token"]})
                    continue
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"dataset {dataset.name!r} is locked by process {held and held.get('pid')} on "
                    f"{held and held.get('host')} since {held and held.get('at')}; if no curate "
                    f"process is running there, delete the document {key!r} from the "
                    f"{COLLECTION!r} collection"
                ) from None
            time.sleep(0.02)
    try:
        _refresh(dataset)
        yield
    finally:
        coll.delete_one({"_id": key, "token": me["token"]})
