"""A proof-of-authority chain's blocks (geth clique, Besu QBFT: long extraData) are readable through `connect`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tclearn.ledger.chain import connect

CHAIN_ID = 1337
SEAL = "0x" + "ab" * 97  # 32 bytes of vanity + 65 of signature, as clique writes it


def _block() -> dict[str, Any]:
    zero32, zero20 = "0x" + "00" * 32, "0x" + "00" * 20
    return {
        "number": "0x5", "hash": "0x" + "11" * 32, "parentHash": zero32, "nonce": "0x0000000000000000",
        "sha3Uncles": zero32, "logsBloom": "0x" + "00" * 256, "transactionsRoot": zero32,
        "stateRoot": zero32, "receiptsRoot": zero32, "miner": zero20, "difficulty": "0x2",
        "totalDifficulty": "0xa", "extraData": SEAL, "size": "0x260", "gasLimit": "0x1c9c380",
        "gasUsed": "0x0", "timestamp": "0x65000000", "transactions": [], "uncles": [], "mixHash": zero32,
    }  # fmt: skip


class _PoaNode(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        results = {"eth_chainId": hex(CHAIN_ID), "eth_getBlockByNumber": _block(), "eth_blockNumber": "0x5"}
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": results[request["method"]]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def poa_node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PoaNode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=5)


def test_blocks_with_a_clique_seal_are_read(poa_node: str) -> None:
    chain = connect(poa_node, expected_chain_id=CHAIN_ID)

    block = chain.w3.eth.get_block("latest")

    assert block["number"] == 5 and bytes(block["proofOfAuthorityData"]).hex() == SEAL[2:]
    assert chain.latest_block() == 5
