"""Model downloads as each variant allows: B decrypted for the operator only, C for no one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from tclearn.ledger.localchain import LocalNode
from tclearn.types import Variant
from tclearn.vault.codec import architecture_of, decode_model
from tclearn.vault.signing import sign_request
from tests.services.conftest import deploy_sites, member_client, operator_headers


def test_variant_b_model_is_decrypted_for_the_operator_only(anvil_node: LocalNode, tmp_path: Path) -> None:
    with deploy_sites(anvil_node, tmp_path, Variant.B) as deployed:
        site = deployed.open(0)
        with member_client(site) as api:
            sealed_hash = api.get("/models/0", headers=operator_headers()).json()["model_hash"]
            own = api.get("/models/0/blob", headers=operator_headers())
            assert own.status_code == 200
            weights = decode_model(own.content, architecture_of(deployed.genesis))
            assert all(torch.equal(weights[k], deployed.genesis[k]) for k in deployed.genesis)
            assert hashlib.sha256(own.content).hexdigest() != sealed_hash  # the clear file, not the ciphertext
            peer = api.get(
                "/models/0/blob",
                headers=sign_request(deployed.accounts[1], api.app.state.audience, "GET", "/models/0/blob"),
            )
            assert peer.status_code == 403 and "sealed (variant B)" in peer.json()["message"]
            image = next(iter(sorted((tmp_path / "data" / "global" / "images").iterdir()))).read_bytes()
            predicted = api.post("/models/0/predict", headers=operator_headers(), files={"image": ("g.png", image)})
            assert predicted.status_code == 200 and predicted.json()["shape"] == [1, 32, 32]
        site.close()
