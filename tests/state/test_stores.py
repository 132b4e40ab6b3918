"""One state suite on SQLite and on a real PostgreSQL server: every store kept in a `Database`, through its
public API, and concurrent writers that lose no row."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from tclearn.audit.follow import ChainFollower
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.config import save_deployment
from tclearn.errors import LedgerError
from tclearn.he import log as he_log
from tclearn.ledger.deployment import deployment_of
from tclearn.ledger.events import EventReader, LedgerEvent
from tclearn.site.jobs import JobRunner, JobState
from tclearn.site.node import CastVote, NodeRunner
from tclearn.state.db import Database
from tclearn.vault.access_log import AccessRecord, access_entries, record_access
from tclearn.vault.store import FsspecStore
from tests.conftest import Coalition

SHA = "ab" * 32


def test_vault_access_log(database_url: str) -> None:
    db = Database(database_url)
    record_access(db, "0xA", "get", SHA, 10)
    record_access(db, "0xB", "put", "cd" * 32, 2**40)  # a BigInteger size
    record_access(db, "0xA", "put", SHA, 20)
    assert [(e.account, e.action, e.size) for e in access_entries(db)] == [
        ("0xA", "put", 20),
        ("0xB", "put", 2**40),
        ("0xA", "get", 10),
    ]
    assert [e.size for e in access_entries(db, account="0xA", sha256=SHA, limit=1)] == [20]


def test_supervisor_decryption_log(database_url: str) -> None:
    db = Database(database_url)
    he_log.record(db, "0xA", "decrypt", "m1", "ctx", 128)
    he_log.record(db, "0xB", "refused", "m2", "ctx", 0)
    assert [(e.account, e.model, e.values) for e in he_log.entries(db)] == [("0xB", "m2", 0), ("0xA", "m1", 128)]
    assert [e.action for e in he_log.entries(db, model="m1")] == ["decrypt"]


def test_event_cursor_resumes_in_a_new_process(database_url: str, coalition: Coalition) -> None:
    def reader() -> EventReader:  # a new Database each time: what a restarted process opens
        co = coalition
        return EventReader(co.chain.w3, co.client.address, co.chain.chain_id, Database(database_url), "r")

    seen: list[LedgerEvent] = []
    assert reader().poll(seen.append) == len(coalition.client.events())
    coalition.submit(coalition.hospitals[0])
    later: list[LedgerEvent] = []
    reader().poll(later.append)
    assert [e.name for e in later] == ["Submitted"]


def test_auditor_follower_keeps_the_events_it_read(database_url: str, coalition: Coalition) -> None:
    coalition.submit(coalition.hospitals[0])
    ChainFollower(coalition.client, Database(database_url)).refresh()
    again = ChainFollower(coalition.client, Database(database_url))
    assert again.stored_events() == coalition.client.events()


class _Unreachable:
    """A chain client whose every call fails as an unreachable chain does."""

    def __getattr__(self, name: str) -> Any:
        raise LedgerError("chain unreachable (test)")


def test_member_jobs(database_url: str) -> None:
    site: Any = SimpleNamespace(
        coalition=SimpleNamespace(timed_by=lambda clock: SimpleNamespace(client=_Unreachable()))
    )
    site.hospital = SimpleNamespace(name="h", address="0xA")
    site.reread = lambda: False  # the training folder is as it was
    runner = JobRunner(site, Database(database_url))
    job = runner.start("operator")
    runner.wait(10)
    failed = runner.get("operator", job.id)
    assert (failed.state, failed.error) == (JobState.FAILED, "chain unreachable (test)")
    assert [j.id for j in runner.jobs("operator")] == [job.id]
    assert runner.jobs("0xsomeone-else") == []


def test_node_watch_list_and_votes(database_url: str, coalition: Coalition, tmp_path: Path) -> None:
    deployment = tmp_path / "deployment.json"
    founding = coalition.client.events()[0]  # the deployment's first event names its transaction
    save_deployment(deployment_of(coalition.client, founding.block_number, founding.tx_hash, "B"), deployment)
    watcher = coalition.spare[0]  # not a member: no duty, it only watches
    config = SimpleNamespace(deployment=deployment, confirmations=0, keeper_interval=3600.0, poll_interval=0.1)
    store = FsspecStore(f"memory://policy-{tmp_path.name}")
    store.put(AcceptancePolicy().encode())  # the policy the chain declares: the node applies it, as a site does
    site: Any = SimpleNamespace(
        client=coalition.client,
        hospital=SimpleNamespace(address=watcher.address, name="w"),
        config=config,
        coalition=SimpleNamespace(client=coalition.client, store=store, policy=AcceptancePolicy()),
    )
    db = Database(database_url)
    model_id = coalition.submit(coalition.hospitals[0])
    NodeRunner(site, db).step()
    assert NodeRunner(site, db).watched() == [model_id]  # a restarted node still watches it
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with db.session() as s:
        s.add(CastVote(node=watcher.address, model_id=model_id, approve=True, tx_hash="0x" + "11" * 32, at=at))
    assert NodeRunner(site, db).votes_cast() == {model_id: True}


def test_concurrent_writers_lose_no_row(database_url: str) -> None:
    writers, each = 8, 25
    db = Database(database_url)
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(each):
                record_access(db, f"0x{n}", "put", f"{n:02d}{i:062d}", i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    assert not errors, errors
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AccessRecord)) == writers * each
        assert s.scalar(select(func.count(func.distinct(AccessRecord.sha256)))) == writers * each
    print(f"{writers * each} rows by {writers} threads in {elapsed:.2f}s on {db.engine.dialect.name}")
