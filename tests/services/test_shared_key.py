"""One hospital's account in two processes on a chain with a block time: a real `tclearn node run` daemon opens and
votes while another process sends as the same account through the ledger client, on an Anvil mining a block
every second. Both share the site file's nonce lock folder; every transaction of both is mined."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tclearn.coalition.member import propose
from tclearn.ledger.localchain import LocalNode
from tclearn.site.node import NodeRunner
from tclearn.state.db import Database
from tclearn.types import ModelState, Variant
from tests.conftest import ACCOUNTS, node_chain
from tests.services.node_sites import cli, env, node_coalition, wait_for

pytestmark = pytest.mark.anvil

ROOT = Path(__file__).resolve().parents[2]
THREADS = 4  # of the other process, each sending from the submission until the commit


def metric(port: int, name: str, **labels: str) -> float:
    """The daemon's counter `name`, summed over the samples carrying `labels`."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = (s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)
    return sum(s.value for s in samples if labels.items() <= s.labels.items())


def test_a_node_daemon_and_another_process_sign_as_one_account(tmp_path: Path) -> None:
    with (
        LocalNode("anvil", accounts=ACCOUNTS, block_time=1) as chain_node,
        node_coalition(node_chain(chain_node), tmp_path, Variant.A, hospitals=3) as nc,
    ):
        site = nc.sites[0]  # hospital-1: the daemon and the other process sign as dev account 1
        # votes cast directly: the daemon's vote is a transaction of its own, sent beside the other process's
        site.write_text('nonce_locks = "locks"\nvotes = "direct"\n' + site.read_text())
        me, client, w3 = nc.address(0), nc.client, nc.client.chain.w3
        before = w3.eth.get_transaction_count(me)
        log = tmp_path / "node.log"
        daemon = subprocess.Popen(
            cli("node", "run", "--config", str(site)), stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env()
        )
        sender = ["tests.ledger.nonce_sender", chain_node.url, client.address, "1", str(THREADS), "0"]
        other = subprocess.Popen(
            [sys.executable, "-m", *sender, str(tmp_path / "locks")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env(),
        )
        validator, proposer = nc.open(1), nc.open(2)  # hospital-2 validates in this process, hospital-3 proposes
        runner = NodeRunner(validator, Database(validator.config.state))
        port = nc.port(0)
        try:
            wait_for(f"http://127.0.0.1:{port}/health", daemon, log)
            assert other.stdout is not None and other.stdout.readline().strip() == "ready"
            assert other.stdin is not None
            model_id = propose(proposer.coalition, proposer.hospital).submission.model_id
            other.stdin.write("go\n")
            other.stdin.flush()
            deadline = time.monotonic() + 120
            while client.get_model(model_id, with_uri=False).state is not ModelState.COMMITTED:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                runner.step()
                time.sleep(0.2)

            out, err = other.communicate("stop\n", timeout=180)
            assert other.returncode == 0, err
            report = json.loads(out.strip().splitlines()[-1])
            errors, opened, voted = (
                metric(port, "tclearn_node_errors_total"),
                metric(port, "tclearn_node_duties_total", duty="open"),
                metric(port, "tclearn_node_votes_cast_total"),
            )
        finally:
            if other.poll() is None:  # a failed step above: the other sender would go on sending
                other.kill()
                other.wait(timeout=30)
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
            runner.db.dispose()
            validator.close()
            proposer.close()

        assert daemon.returncode == 0, log.read_text()[-3000:]
        assert report["errors"] == [] and report["retried"] == []
        assert errors == 0, log.read_text()[-3000:]
        assert voted == 1 and client.has_voted(model_id, me)
        # every transaction of both processes mined: the account's nonce moved by exactly their number
        assert w3.eth.get_transaction_count(me) == before + len(report["hashes"]) + opened + voted
        blocks = [w3.eth.get_transaction_receipt(h)["blockNumber"] for h in report["hashes"]]
        vote = next(e for e in client.events() if e.name == "Voted" and e.args["validator"] == me)
        assert min(blocks) <= vote.block_number <= max(blocks), "the other process was not sending during the vote"
