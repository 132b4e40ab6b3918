"""The member API's `GET /privacy` on Anvil: a DP coalition (each member's cap on chain) where hospital-1 trains an
increment with DP-SGD through `POST /jobs/train` and hospital-2 is charged directly; every member's budget and
hospital-1's own charges, as the contract counts them, to its operator and to a signed peer."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from fastapi.testclient import TestClient

from tclearn.coalition.policy import PrivacyPolicy
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.localchain import LocalNode
from tclearn.ledger.values import epsilon_of, epsilon_units
from tclearn.types import Variant
from tclearn.vault.signing import sign_request
from tests.services.conftest import LENIENT, Deployed, deploy_sites, member_client, operator_headers, wait_job

CAP = 6.0
PER_INCREMENT = 2.0  # what each of hospital-1's increments may spend
OTHER = epsilon_units(1.5)  # hospital-2's direct charge
POLICY = dataclasses.replace(LENIENT, privacy=PrivacyPolicy(required=False, epsilon_cap=CAP))


@dataclass
class Private:
    deployed: Deployed
    api: TestClient
    model_id: int

    @property
    def client(self) -> LedgerClient:
        return self.deployed.client


@pytest.fixture(scope="module")
def dp_coalition(anvil_node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    torch.set_num_threads(1)
    dp = ("[training.privacy]", f"epsilon = {PER_INCREMENT}")
    folder = tmp_path_factory.mktemp("member-privacy")
    with deploy_sites(anvil_node, folder, Variant.A, POLICY, site_lines={0: dp}) as deployed:
        site = deployed.open(0)
        with member_client(site, history_ttl=0.0) as api:
            job = wait_job(api, api.post("/jobs/train", headers=operator_headers()).json()["id"], timeout=120)
            assert job["state"] == "done", job
            other = deployed.accounts[1]
            deployed.client.submit(other, 0, os.urandom(32), "vault://x", os.urandom(32), OTHER)
            yield Private(deployed, api, job["model_id"])
        site.close()


def test_every_members_budget_and_this_hospitals_charges(dp_coalition: Private) -> None:
    client, api = dp_coalition.client, dp_coalition.api
    hospital1, hospital2, hospital3 = (a.address for a in dp_coalition.deployed.accounts)
    charged = client.privacy_charge(dp_coalition.model_id)
    assert 0 < charged <= epsilon_units(PER_INCREMENT)  # trained with DP-SGD at (at most) the epsilon chosen

    body = api.get("/privacy", headers=operator_headers()).json()

    assert body["site"] == hospital1 and body["cap"] == CAP
    members = {m["address"]: m for m in body["members"]}
    assert [m["name"] for m in body["members"]] == ["hospital-1", "hospital-2", "hospital-3"]
    for address in (hospital1, hospital2, hospital3):
        assert members[address]["spent_units"] == client.privacy_spent(address)
        assert members[address]["cap_units"] == client.parameters().epsilon_cap == epsilon_units(CAP)
    assert members[hospital1]["spent"] == epsilon_of(charged)
    assert members[hospital1]["left_units"] == epsilon_units(CAP) - charged
    assert members[hospital2]["spent_units"] == OTHER and members[hospital2]["left"] == pytest.approx(CAP - 1.5)
    assert members[hospital3]["spent"] == 0 and members[hospital3]["left"] == CAP
    # its own charges only: hospital-2's is not among them
    assert [(c["model_id"], c["charge_units"], c["spent_units"]) for c in body["charges"]] == [
        (dp_coalition.model_id, charged, charged)
    ]
    assert body["charges"][0]["charge"] == epsilon_of(charged) and body["charges"][0]["state"] == "submitted"


def test_peers_read_it_signed_and_nobody_without_credentials(dp_coalition: Private) -> None:
    api = dp_coalition.api
    peer = dp_coalition.deployed.accounts[2]
    audience = api.app.state.audience  # type: ignore[attr-defined]
    headers = sign_request(peer, audience, "GET", "/privacy", hashlib.sha256(b"").hexdigest())
    signed = api.get("/privacy", headers=headers)
    assert signed.status_code == 200 and signed.json()["site"] == dp_coalition.deployed.accounts[0].address
    assert api.get("/privacy").status_code == 401
    assert api.get("/privacy", headers=operator_headers("wrong-token-0123456789")).status_code == 401
