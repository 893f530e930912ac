"""The local Mongo server's capped oplog (stack/java/FreshMongoServer.java): it keeps the newest
`probablyfresh.mongo.oplogMaxEntries` change events, and a change stream resumed from (or left at)
an older position fails with ChangeStreamHistoryLost (code 286), as on mongod; a recent position
still resumes. A server of its own on a free port with a cap of 50, so the stack's is untouched."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from fresh.wait import wait_until
from stack.services import JAVA_DIR, LocalStack

CAP = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def capped_mongo(local_stack: LocalStack) -> Iterator[MongoClient[dict[str, Any]]]:
    port = _free_port()
    proc = subprocess.Popen(
        ["java", "-Xmx256m", f"-Dprobablyfresh.mongo.oplogMaxEntries={CAP}", "-cp",
         str(local_stack.jars_root / "mongo" / "*"), str(JAVA_DIR / "FreshMongoServer.java"), "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client: MongoClient[dict[str, Any]] = MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true",
                                                      serverSelectionTimeoutMS=2000)
    try:
        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"FreshMongoServer exited with {proc.returncode}")
            try:
                return bool(client.admin.command("ping"))
            except Exception:
                return False

        wait_until(answers, timeout_s=180, what="the capped FreshMongoServer to answer ping", interval_s=0.5)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)


def _insert(coll: Any, n: int) -> None:
    coll.insert_many([{"_id": f"d{uuid.uuid4().hex}", "i": i} for i in range(n)])


def test_resume_within_the_cap_works_and_behind_it_fails_clearly(capped_mongo: MongoClient[dict[str, Any]]) -> None:
    coll = capped_mongo["oplog_it"][f"c{uuid.uuid4().hex[:8]}"]
    with coll.watch() as stream:
        coll.insert_one({"_id": "first"})
        event = None
        deadline = time.monotonic() + 60
        while event is None and time.monotonic() < deadline:
            event = stream.try_next()
        assert event is not None and event["documentKey"]["_id"] == "first"
        old_token = stream.resume_token

    coll.insert_one({"_id": "second"})
    with coll.watch(resume_after=old_token) as again:  # within the cap: the next event is there
        nxt = None
        deadline = time.monotonic() + 60
        while nxt is None and time.monotonic() < deadline:
            nxt = again.try_next()
        assert nxt is not None and nxt["documentKey"]["_id"] == "second"

    _insert(coll, 4 * CAP)  # pushes "first" and "second" out of the capped oplog
    with pytest.raises(OperationFailure) as info, coll.watch(resume_after=old_token) as lost:
        lost.try_next()
    assert info.value.code == 286
    assert "ChangeStreamHistoryLost" in str(info.value.details) or "no longer in the oplog" in str(info.value)


def test_a_cursor_left_behind_the_cap_fails_and_never_skips(capped_mongo: MongoClient[dict[str, Any]]) -> None:
    coll = capped_mongo["oplog_it"][f"c{uuid.uuid4().hex[:8]}"]
    with coll.watch() as stream:
        assert stream.try_next() is None  # opened at "now"
        _insert(coll, 4 * CAP)
        with pytest.raises(OperationFailure) as info:
            stream.try_next()
        assert info.value.code == 286
