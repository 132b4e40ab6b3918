"""The member API's governance routes on a real coalition (Anvil, a live vault): hospital-1 proposes through its
API, hospital-2 votes through its own, a proposal is executed; peers read but never sign; mistakes are named."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tclearn.cli.app import app
from tclearn.coalition.policy import AcceptancePolicy
from tclearn.ledger.governance import SetParameters
from tclearn.ledger.localchain import LocalNode
from tclearn.types import Variant
from tclearn.vault.store import FsspecStore
from tests.services.conftest import HOSPITALS, Deployed, deploy_sites, member_client, operator_headers
from tests.services.test_member import signed

OPERATOR = operator_headers()


@pytest.fixture(scope="module")
def gov(anvil_node: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployed, list[TestClient]]]:
    with deploy_sites(anvil_node, tmp_path_factory.mktemp("member-gov"), Variant.A) as deployed:
        sites = [deployed.open(i) for i in range(HOSPITALS)]
        apis = [member_client(site, history_ttl=0.0) for site in sites]
        yield deployed, apis
        for api in apis:
            api.close()
        for site in sites:
            site.close()


def test_a_member_is_admitted_through_two_member_apis(gov: tuple[Deployed, list[TestClient]]) -> None:
    deployed, (first, second, _third) = gov
    body = {"kind": "admit", "account": deployed.outsider.address, "roles": ["member"], "name": "late"}
    made = first.post("/gov/proposals", json=body, headers=OPERATOR)
    assert made.status_code == 201, made.text
    p = made.json()
    assert (p["kind"], p["proposer_name"], p["approvals"], p["needed"], p["state"]) == (
        "admit",
        "hospital-1",
        1,
        2,
        "pending",
    )
    assert p["description"] == f"admit late ({deployed.outsider.address}) as member"
    early = first.post(f"/gov/proposals/{p['id']}/execute", headers=OPERATOR)
    assert early.status_code == 409 and early.json()["error"] == "ProposalNotApproved"
    voted = second.post(f"/gov/proposals/{p['id']}/ballot", json={"approve": True}, headers=OPERATOR)
    assert voted.status_code == 200 and voted.json()["executable"] is True
    twice = second.post(f"/gov/proposals/{p['id']}/ballot", json={"approve": False}, headers=OPERATOR)
    assert twice.status_code == 409 and twice.json()["error"] == "AlreadyBalloted"
    done = first.post(f"/gov/proposals/{p['id']}/execute", headers=OPERATOR).json()
    assert done["state"] == "executed"
    assert [(b["member_name"], b["approve"]) for b in done["ballots"]] == [("hospital-1", True), ("hospital-2", True)]
    member = deployed.client.get_member(deployed.outsider.address)
    assert member is not None and member.active and member.name == "late"
    listed = first.get("/gov/proposals", headers=OPERATOR).json()
    assert listed[p["id"]] == done


def test_a_policy_change_stores_the_record_and_proposes_its_hash(gov: tuple[Deployed, list[TestClient]]) -> None:
    deployed, (first, *_) = gov
    body = {"kind": "parameters", "policy": {"max_drift": 0.04}, "voting_timeout": 120}
    p = first.post("/gov/proposals", json=body, headers=OPERATOR).json()
    record = AcceptancePolicy(max_drift=0.04).encode()
    assert p["action"]["policy_hash"] == hashlib.sha256(record).hexdigest() and p["action"]["voting_timeout"] == 120
    assert p["action"]["general_timeout"] == deployed.client.parameters().general_timeout  # the others unchanged
    assert p["action"]["epsilon_cap"] == 0
    capped = first.post("/gov/proposals", json={"kind": "parameters", "epsilon_cap": 1.25}, headers=OPERATOR).json()
    assert capped["action"]["epsilon_cap"] == 1_250_000 and "privacy cap epsilon 1.25" in capped["description"]
    site = deployed.open(0)
    try:
        assert site.coalition.store.get(p["action"]["policy_hash"]) == record
    finally:
        site.close()


def test_peers_read_proposals_but_only_the_operator_signs(gov: tuple[Deployed, list[TestClient]]) -> None:
    deployed, (first, *_) = gov
    peer = deployed.accounts[1]
    assert first.get("/gov/proposals", headers=signed(first, peer, "GET", "/gov/proposals")).status_code == 200
    body = json.dumps({"kind": "remove", "account": peer.address}).encode()
    headers = {**signed(first, peer, "POST", "/gov/proposals", body), "content-type": "application/json"}
    refused = first.post("/gov/proposals", content=body, headers=headers)
    assert refused.status_code == 403 and "operator" in refused.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("get", "/gov/proposals/99", None, 404, "no proposal with id 99"),
        ("post", "/gov/proposals/99/ballot", {"approve": True}, 404, "no proposal with id 99"),
        ("post", "/gov/proposals/99/execute", None, 404, "no proposal with id 99"),
        ("post", "/gov/proposals", {"kind": "bogus"}, 422, "kind"),
        ("post", "/gov/proposals", {"kind": "parameters"}, 400, "this changes nothing"),
        ("post", "/gov/proposals", {"kind": "parameters", "policy": {"drift": 1}}, 400, "unknown policy setting"),
        ("post", "/gov/proposals", {"kind": "roles", "account": "0xnope", "roles": ["member"]}, 400, "not an Ethereum"),
        ("post", "/gov/proposals", {"kind": "admit", "account": "0x" + "12" * 20, "roles": ["doctor"]}, 400, "doctor"),
    ],
)
def test_bad_requests_are_named(
    gov: tuple[Deployed, list[TestClient]], method: str, path: str, body: object, status: int, says: str
) -> None:
    _deployed, (first, *_) = gov
    response = getattr(first, method)(path, headers=OPERATOR, **({} if body is None else {"json": body}))
    assert response.status_code == status, response.text
    assert says in response.text


def test_a_non_member_proposal_is_the_contract_error(gov: tuple[Deployed, list[TestClient]]) -> None:
    _deployed, (first, *_) = gov
    refused = first.post("/gov/proposals", json={"kind": "remove", "account": "0x" + "12" * 20}, headers=OPERATOR)
    assert refused.status_code == 409 and refused.json()["error"] == "NotMember"


def test_the_cli_proposes_a_policy_stored_in_the_coalition_s_vault(
    gov: tuple[Deployed, list[TestClient]], tmp_path: Path
) -> None:
    deployed, _apis = gov
    record = AcceptancePolicy(max_drift=0.03, min_batch_size=4).encode()
    (tmp_path / "policy.json").write_bytes(record)
    dep = ["-d", str(deployed.folder / "deployment.json"), "--dev-account", "2"]
    result = CliRunner().invoke(
        app,
        ["gov", "propose", "policy", "--policy", str(tmp_path / "policy.json"), "--vault", deployed.vault_url, *dep],
    )
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(record).hexdigest()
    proposal = deployed.client.proposals()[-1]
    assert proposal.action == SetParameters(deployed.client.parameters().replace(policy_hash=bytes.fromhex(digest)))
    assert FsspecStore(f"file://{deployed.folder}/vault").get(digest) == record  # stored, signed as hospital-2


def test_the_governance_routes_answer_fuzzed_requests_with_4xx_never_5xx(
    gov: tuple[Deployed, list[TestClient]],
) -> None:
    from fastapi import FastAPI

    from services.common import install_error_handlers
    from services.member.governance import governance_router
    from tests.services.test_fuzz import fuzz

    deployed, (first, *_) = gov
    site = deployed.open(0)
    try:
        app = FastAPI(title="governance")
        install_error_handlers(app)
        app.include_router(governance_router(site))
        app.state.authenticator = first.app.state.authenticator  # type: ignore[attr-defined]
        seen = fuzz(app, lambda _case: OPERATOR, examples=20)
    finally:
        site.close()
    assert seen[401] > 0 and seen[200] > 0 and seen[400] + seen[409] + seen[422] > 0
