"""The node daemon on a real Anvil node with a real vault process: first its engine in-process (general, validator
and keeper duties; signed votes decided in one transaction; a lost vote record; a failing duty; an unverifiable
blob), then three `tclearn node run` processes: a round commits, a node killed mid-round does not stop the next one,
a restarted node resumes without voting twice, /metrics moves, SIGTERM exits 0."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from typer.testing import CliRunner

from services.node.app import create_app
from tclearn.cli.app import app
from tclearn.coalition import validator as validator_duty
from tclearn.coalition.member import propose
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.errors import ConfigError
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.events import LedgerEvent
from tclearn.ledger.governance import SetParameters
from tclearn.ledger.localchain import LocalNode
from tclearn.site.config import load_site_config
from tclearn.site.node import CastVote, NodeRunner
from tclearn.site.open import Site
from tclearn.state.db import Database
from tclearn.types import ModelState, RejectReason, Variant
from tclearn.vault.store import FsspecStore
from tests.conftest import node_chain
from tests.governing import govern
from tests.services.node_sites import NodeCoalition, cli, env, node_coalition, wait_for

pytestmark = pytest.mark.anvil


@dataclass
class InProcess:
    coalition: NodeCoalition
    sites: list[Site]  # hospital-1 .. hospital-4; hospital-4 proposes
    runners: list[NodeRunner]  # the nodes of hospital-1 .. hospital-3

    @property
    def client(self) -> LedgerClient:
        return self.coalition.client

    def propose(self) -> int:
        proposer = self.sites[3]
        return propose(proposer.coalition, proposer.hospital).submission.model_id

    def step_until(
        self, done: Callable[[], bool], runners: list[NodeRunner] | None = None, timeout: float = 60
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for runner in runners or self.runners:
                runner.step()
                if done():
                    return
        raise AssertionError("the runners did not get there in time")

    def state(self, model_id: int) -> ModelState:
        return self.client.get_model(model_id, with_uri=False).state

    def ballots(self, model_id: int) -> dict[str, bytes]:
        return ballot_box(self.coalition, model_id)


def ballot_box(nc: NodeCoalition, model_id: int) -> dict[str, bytes]:
    """The signed votes posted on `model_id`, read from the vault's own storage."""
    store = FsspecStore(f"file://{nc.folder / 'vault' / 'store'}")
    return store.ballots(nc.client.get_model(model_id, with_uri=False).model_hash.hex())


def events(client: LedgerClient, name: str, model_id: int) -> list[LedgerEvent]:
    return [e for e in client.events() if e.name == name and e.args.get("id") == model_id]


def voters(client: LedgerClient, model_id: int) -> set[str]:
    """The validators whose vote on `model_id` the chain counted (cast directly or carried by `decide`)."""
    return {e.args["validator"] for e in events(client, "Voted", model_id)}


def failed_transactions(client: LedgerClient, since: int) -> list[str]:
    """Transactions mined after block `since` that reverted."""
    w3 = client.w3
    return [
        tx.hex()
        for number in range(since + 1, w3.eth.block_number + 1)
        for tx in w3.eth.get_block(number)["transactions"]
        if w3.eth.get_transaction_receipt(tx)["status"] != 1
    ]


@pytest.fixture(scope="module")
def local(anvil_node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with node_coalition(node_chain(anvil_node), tmp_path_factory.mktemp("node-a"), Variant.A) as nc:
        sites = [nc.open(i) for i in range(4)]
        runners = [NodeRunner(site, Database(site.config.state)) for site in sites[:3]]
        yield InProcess(nc, sites, runners)
        for site, runner in zip(sites, runners, strict=False):
            runner.db.dispose()
            site.close()


def test_runners_open_and_decide_a_members_candidate_with_signed_votes_in_one_transaction(local: InProcess) -> None:
    since = local.client.w3.eth.block_number
    model_id = local.propose()
    local.step_until(lambda: local.state(model_id) is ModelState.COMMITTED)
    assert sum(r.step() for r in local.runners) == 0  # once decided, nothing is left to do
    record = local.client.get_model(model_id, with_uri=False)
    assert local.client.head() == model_id and record.approvals == 2 and record.rejections == 0
    opened = [r for r in local.runners if r.stats.duties["open"]]
    assert [r.me for r in opened] == [record.general]
    (committed,) = events(local.client, "Committed", model_id)
    voted = events(local.client, "Voted", model_id)
    assert {e.tx_hash for e in voted} == {committed.tx_hash}  # every vote carried by the one deciding transaction
    assert voters(local.client, model_id) == set(local.ballots(model_id))  # every signer posted, and was counted
    assert sum(r.stats.duties["decide"] for r in local.runners) == 1
    assert failed_transactions(local.client, since) == []
    for runner in local.runners:
        signed = runner.me in voters(local.client, model_id)
        assert not local.client.has_voted(model_id, runner.me)  # no `vote` transaction
        assert (model_id in runner.votes_cast()) == signed
        with runner.db.session() as session:
            row = session.get(CastVote, (runner.me, model_id))
        if row is not None:  # the vote named by its signature; the transaction only for the node that decided
            assert row.signature_hash is not None and len(row.signature_hash) == 66
            assert row.tx_hash == (committed.tx_hash if runner.stats.duties["decide"] else None)
        assert runner.stats.votes["approve"] == runner.stats.duties["vote"] == int(signed)
        assert runner.stats.candidates_seen == 1 and runner.stats.errors == 0
        assert runner.stats.last_block >= record_block(local.client, model_id)
    assert sum(r.stats.evaluations for r in local.runners) == 2
    assert all(r.stats.evaluation_seconds > 0 for r in local.runners if r.stats.evaluations)


def scrape(runner: NodeRunner) -> dict[str, float]:
    """The runner's /metrics through the daemon's app (its loop not started: no lifespan)."""
    return parse_metrics(TestClient(create_app(runner)).get("/metrics").text)


def parse_metrics(text: str) -> dict[str, float]:
    return {
        sample.name + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_duty_metrics_move_when_the_nodes_perform_duties(local: InProcess) -> None:
    opened, approved = "tclearn_node_duties_total{duty=open}", "tclearn_node_votes_cast_total{approve=true}"
    before = [scrape(r) for r in local.runners]

    model_id = local.propose()
    local.step_until(lambda: local.state(model_id) is ModelState.COMMITTED)
    after = [scrape(r) for r in local.runners]

    assert sum(a[opened] - b[opened] for a, b in zip(after, before, strict=True)) == 1
    assert sum(a[approved] - b[approved] for a, b in zip(after, before, strict=True)) == 2
    decided = "tclearn_node_duties_total{duty=decide}"
    assert sum(a[decided] - b[decided] for a, b in zip(after, before, strict=True)) == 1
    general = next(
        i for i, r in enumerate(local.runners) if r.me == local.client.get_model(model_id, with_uri=False).general
    )
    assert after[general][opened] == before[general][opened] + 1
    client = TestClient(create_app(local.runners[0]))
    assert client.get("/health").status_code == 503  # the loop is not running here
    http = parse_metrics(client.get("/metrics").text)
    assert http["tclearn_http_request_duration_seconds_count{method=GET}{route=/health}{status=503}"] == 1


def record_block(client: LedgerClient, model_id: int) -> int:
    return max(e.block_number for e in client.events() if e.args.get("id") == model_id)


def test_a_lost_vote_record_never_leads_to_a_second_vote(local: InProcess) -> None:
    model_id = local.propose()
    local.step_until(lambda: len(local.ballots(model_id)) == 1)
    (posted,) = local.ballots(model_id).items()
    voter = next(r for r in local.runners if r.me == posted[0])
    # the voter crashed after posting its signed vote and before its table write: a fresh state, the same account
    amnesiac = NodeRunner(voter.site, Database("sqlite://"))
    assert amnesiac.step() == 0 and model_id in amnesiac.watched()
    assert amnesiac.stats.duties["vote"] == 0 and amnesiac.stats.errors == 0
    assert local.ballots(model_id) == dict([posted]) and local.state(model_id) is ModelState.OPEN
    local.step_until(lambda: local.state(model_id) is ModelState.COMMITTED)
    assert model_id not in amnesiac.votes_cast() and local.ballots(model_id)[voter.me] == posted[1]


def test_a_failing_duty_is_counted_and_retried_and_a_silent_general_is_replaced(
    local: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_vote = validator_duty.vote
    failures: list[str] = []

    def flaky(co: Any, validator: Any, candidate: Any) -> Any:
        if not failures:
            failures.append(validator.name)
            raise RuntimeError("evaluation crashed")
        return real_vote(co, validator, candidate)

    monkeypatch.setattr(validator_duty, "vote", flaky)
    model_id = local.propose()
    silent = local.client.get_model(model_id, with_uri=False).general
    others = [r for r in local.runners if r.me != silent]
    for runner in others:
        runner.step()
    assert local.state(model_id) is ModelState.SUBMITTED  # its general is not running
    local.client.chain.advance_time(61)  # past the general's deadline: any node keeps it
    local.step_until(lambda: local.state(model_id) is ModelState.COMMITTED, others)
    assert sum(r.stats.duties["reassigned"] for r in others) == 1
    assert local.client.get_model(model_id, with_uri=False).general != silent
    crashed = next(r for r in others if r.name == failures[0])
    assert crashed.stats.errors == 1 and crashed.me in voters(local.client, model_id)  # retried, voted once
    assert scrape(crashed)["tclearn_node_duty_failures_total{duty=vote}{reason=error}"] == 1


def test_a_vote_assessed_while_the_candidate_was_decided_is_late_not_an_error(
    local: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_id = local.propose()
    local.step_until(lambda: local.state(model_id) is ModelState.OPEN)  # opened, nobody voted yet
    slow, *others = sorted(local.runners, key=lambda r: r.me == local.client.get_model(model_id).general)
    real_assess = validator_duty.assess

    def decided_meanwhile(co: Any, validator: Any, candidate: Any) -> Any:
        if validator.address == slow.me:  # the others decide while this node evaluates
            local.step_until(lambda: local.state(model_id) is ModelState.COMMITTED, others)
        return real_assess(co, validator, candidate)

    monkeypatch.setattr(validator_duty, "assess", decided_meanwhile)
    # the module's runners carry the stats of the tests before (one of them makes a vote fail on purpose)
    before, errors = scrape(slow)["tclearn_node_late_votes_total"], slow.stats.errors

    slow.step()

    assert local.state(model_id) is ModelState.COMMITTED and slow.me not in local.ballots(model_id)
    assert slow.me not in voters(local.client, model_id) and model_id not in slow.votes_cast()
    assert scrape(slow)["tclearn_node_late_votes_total"] == before + 1 and slow.stats.errors == errors


def test_an_unverifiable_blob_is_rejected_by_its_general(local: InProcess) -> None:
    proposer = local.sites[3]
    head = local.client.head()
    model_id = proposer.client.submit(
        proposer.hospital.account, head, os.urandom(32), "vault://nowhere", os.urandom(32)
    ).model_id
    local.step_until(lambda: local.state(model_id).final)
    rejected = next(e for e in local.client.events() if e.name == "Rejected" and e.args["id"] == model_id)
    assert rejected.args["reason"] == RejectReason.INTEGRITY and local.client.head() == head
    assert all(r.stats.errors <= 1 for r in local.runners)  # only the flaky vote above, nothing new


# ---- three daemon processes ------------------------------------------------------------------------------------


@dataclass
class Daemon:
    site: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        return {
            sample.name + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).json()
        return answer


def start(nc: NodeCoalition, index: int, tag: str = "") -> Daemon:
    log = nc.folder / f"node-{index}{tag}.log"
    proc = subprocess.Popen(
        cli("node", "run", "--config", str(nc.sites[index])), stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env()
    )
    return Daemon(nc.sites[index], nc.port(index), log, proc)


def wait_state(
    client: LedgerClient, model_id: int, state: ModelState, daemons: list[Daemon], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get_model(model_id, with_uri=False).state is state:
            return
        time.sleep(0.2)
    logs = "\n".join(d.log.read_text()[-3000:] for d in daemons)
    raise AssertionError(f"candidate {model_id} is {client.get_model(model_id, with_uri=False).state}:\n{logs}")


def votes_table(state: str, address: str) -> dict[int, bool]:
    db = Database(state)
    try:
        with db.session() as s:
            rows = s.scalars(select(CastVote).where(CastVote.node == address))
            return {r.model_id: r.approve for r in rows}
    finally:
        db.dispose()


def test_a_node_follows_a_new_policy_and_stops_rather_than_apply_one_its_site_does_not_expect(
    local: InProcess,
) -> None:
    runner, co = local.runners[0], local.sites[0].coalition
    store = FsspecStore(f"file://{local.coalition.folder / 'vault' / 'store'}")
    members = [site.hospital.account for site in local.sites]

    def declare(policy: AcceptancePolicy) -> None:  # carried by two thirds of the members, as the contract requires
        parameters = local.client.parameters().replace(policy_hash=bytes.fromhex(store.put(policy.encode())))
        govern(local.client, members, SetParameters(parameters))

    before = co.policy
    stricter = dataclasses.replace(before, max_drift=0.5)  # the site files pin only the tolerances on G and L
    declare(stricter)
    runner.step()
    assert co.policy == stricter
    declare(dataclasses.replace(before, tolerance_global=0.5))
    with pytest.raises(ConfigError, match=r"tolerance_global is 0.5, not 1.0"):
        runner.step()
    assert co.policy == stricter  # never the one the site does not expect
    declare(before)  # put back for the tests below
    runner.step()
    assert co.policy == before


def test_three_daemons_survive_a_kill_resume_without_voting_twice_and_stop_on_sigterm(
    anvil_node: LocalNode, tmp_path: Path
) -> None:
    with node_coalition(node_chain(anvil_node), tmp_path, Variant.B) as nc:
        daemons = [start(nc, i) for i in range(3)]  # they start (torch, MONAI: slowly) while the member trains
        proposer: Site | None = None
        try:
            proposer = nc.open(3)
            client = proposer.client
            first = propose(proposer.coalition, proposer.hospital).submission.model_id
            for d in daemons:
                wait_for(f"http://127.0.0.1:{d.port}/health", d.proc, d.log)
            wait_state(client, first, ModelState.COMMITTED, daemons)  # daemons that start late catch up
            time.sleep(1.0)  # the third validator may still be voting after the commit: late, or posted unneeded
            metrics = [d.metrics() for d in daemons]
            assert sum(m["tclearn_node_duties_total{duty=open}"] for m in metrics) == 1
            assert sum(m["tclearn_node_duties_total{duty=decide}"] for m in metrics) == 1
            posted = ballot_box(nc, first)
            assert sum(m["tclearn_node_votes_cast_total{approve=true}"] for m in metrics) == len(posted) >= 2
            assert voters(client, first) <= set(posted) and len(voters(client, first)) >= 2
            late = sum(m["tclearn_node_late_votes_total"] for m in metrics)
            assert sum(m["tclearn_node_evaluation_seconds_count"] for m in metrics) == len(posted) + late
            assert all(m["tclearn_node_candidates_seen_total"] == 1 for m in metrics)
            assert all(m["tclearn_node_last_block"] >= record_block(client, first) for m in metrics)
            assert all(m["tclearn_node_running"] == 1 and m["tclearn_node_errors_total"] == 0 for m in metrics)

            second = propose(proposer.coalition, proposer.hospital).submission
            victim = next(i for i in range(3) if nc.address(i) != second.general)
            daemons[victim].proc.send_signal(signal.SIGKILL)  # mid-round: before its general can even open it
            daemons[victim].proc.wait(timeout=10)
            victim_address = nc.address(victim)
            wait_state(client, second.model_id, ModelState.COMMITTED, daemons)
            assert client.get_model(second.model_id, with_uri=False).approvals == 2  # the two others suffice

            daemons[victim] = start(nc, victim, "-restarted")
            third = propose(proposer.coalition, proposer.hospital).submission.model_id
            wait_for(f"http://127.0.0.1:{daemons[victim].port}/health", daemons[victim].proc, daemons[victim].log)
            wait_state(client, third, ModelState.COMMITTED, daemons)
            deadline = time.monotonic() + 30
            while daemons[victim].health()["last_block"] < record_block(client, third) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)
            restarted = daemons[victim].metrics()
            # resumed from its cursor: candidate 1 is not seen again, 2 and 3 are
            assert restarted["tclearn_node_candidates_seen_total"] == 2
            assert restarted["tclearn_node_errors_total"] == 0
            assert "AlreadyVoted" not in daemons[victim].log.read_text()
            assert victim_address not in voters(client, second.model_id)
            table = votes_table(load_site_config(nc.sites[victim]).state, victim_address)
            assert set(table) == {m for m in (first, third) if victim_address in ballot_box(nc, m)}
            assert restarted["tclearn_node_votes_cast_total{approve=true}"] == int(third in table)
        finally:
            for d in daemons:
                if d.proc.poll() is None:
                    d.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            for d in daemons:
                try:
                    d.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    d.proc.kill()
            stop_seconds = time.monotonic() - started
            if proposer is not None:
                proposer.close()
        for d in daemons:
            assert d.proc.returncode == 0, d.log.read_text()[-3000:]
            assert "(active member, validator) at cursor" in d.log.read_text()
            assert "stopped cleanly on SIGTERM" in d.log.read_text()
        assert stop_seconds < 15


def test_node_run_names_a_bad_site_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCLEARN_NODE_CONFIG", "")  # restored after the test; `node run` sets it
    runner = CliRunner()
    missing = runner.invoke(app, ["node", "run", "--config", str(tmp_path / "node.toml")])
    assert missing.exit_code == 1 and "node.toml does not exist" in missing.stderr
    site = tmp_path / "node.toml"
    site.write_text('name = "x"\ndeployment = "nope.json"\nvault_url = "http://127.0.0.1:9"\ndata = "d"\n')
    bad = runner.invoke(app, ["node", "run", "--config", str(site)])
    assert bad.exit_code == 1 and bad.stderr.strip().endswith("global_test: Field required")
    site.write_text(site.read_text() + 'global_test = "g"\ndev_account = 1\n')
    unopened = runner.invoke(app, ["node", "run", "--config", str(site)])  # fails while the service starts
    assert unopened.exit_code == 1 and unopened.stderr.strip() == f"error: {tmp_path / 'nope.json'} does not exist"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    level = runner.invoke(app, ["node", "run", "--config", str(site), "--log-level", "loud"])
    assert level.exit_code == 2 and "'loud'" in level.stderr and "Traceback" not in level.stderr
