"""Log reads in bounded block ranges: a chain longer than a node's `eth_getLogs` cap (Besu: 1,000 blocks) is
still read whole by the client, the event reader and the member API's history."""

from __future__ import annotations

from typing import Any

import pytest

from tclearn.ledger.chain import embedded_chain
from tclearn.ledger.events import MAX_LOG_RANGE, EventReader, block_ranges
from tclearn.ledger.history import rebuild
from tclearn.state.db import Database
from tests.conftest import ACCOUNTS, Coalition, deploy_coalition


@pytest.mark.parametrize(
    ("start", "end", "size", "ranges"),
    [
        (0, 0, 1000, [(0, 0)]),
        (0, 999, 1000, [(0, 999)]),
        (0, 1000, 1000, [(0, 999), (1000, 1000)]),
        (5, 2504, 1000, [(5, 1004), (1005, 2004), (2005, 2504)]),
        (-1, 3, 2, [(0, 1), (2, 3)]),  # a cursor before the first block
        (7, 6, 1000, []),
    ],
)
def test_block_ranges_cover_the_span_in_bounded_steps(
    start: int, end: int, size: int, ranges: list[tuple[int, int]]
) -> None:
    assert list(block_ranges(start, end, size)) == ranges


class RangeRefused(ValueError):
    pass


def refuse_long_ranges(monkeypatch: pytest.MonkeyPatch, co: Coalition, cap: int = MAX_LOG_RANGE) -> list[int]:
    """Makes the chain's node refuse `eth_getLogs` over more than `cap` blocks, as Besu does; returns the spans
    it was asked for."""
    real, spans = co.chain.w3.eth.get_logs, []

    def get_logs(params: dict[str, Any]) -> Any:
        span = int(params["toBlock"]) - int(params["fromBlock"]) + 1
        spans.append(span)
        if span > cap:
            raise RangeRefused(f"exceeds maximum block range {cap}")
        return real(params)

    monkeypatch.setattr(co.chain.w3.eth, "get_logs", get_logs)
    return spans


@pytest.fixture(scope="module")
def long_chain() -> tuple[Coalition, int]:
    """History on both sides of 2,500 empty blocks: a candidate before them, another after (built once)."""
    coalition = deploy_coalition(embedded_chain(ACCOUNTS))
    before = coalition.submit(coalition.hospitals[0])
    coalition.open(before)
    assert coalition.chain.tester is not None
    coalition.chain.tester.mine_blocks(2500)
    after = coalition.submit(coalition.hospitals[1], parent=0)
    return coalition, after


def test_a_refusing_node_refuses_one_long_read(
    long_chain: tuple[Coalition, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    co, _ = long_chain
    refuse_long_ranges(monkeypatch, co)
    with pytest.raises(RangeRefused):
        co.chain.w3.eth.get_logs({"address": co.client.address, "fromBlock": 0, "toBlock": co.chain.latest_block()})


def test_the_client_reads_a_long_chain_in_bounded_ranges(
    long_chain: tuple[Coalition, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    co, after = long_chain
    expected = co.client.events()
    spans = refuse_long_ranges(monkeypatch, co)

    events = co.client.events()
    uri = co.client.model_uri(after)

    assert events == expected and events[-1].name == "Submitted" and events[-1].block_number > 2500
    assert uri is not None and uri == expected[-1].args["uri"]
    assert rebuild(events).candidates[after].proposer == co.hospitals[1].address
    assert spans and max(spans) <= MAX_LOG_RANGE


def test_the_event_reader_follows_a_long_chain(
    long_chain: tuple[Coalition, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    co, _ = long_chain
    expected = co.client.events()
    refuse_long_ranges(monkeypatch, co)
    reader = EventReader(co.chain.w3, co.client.address, co.chain.chain_id, Database("sqlite://"), "t", batch_size=5000)

    seen: list[Any] = []
    reader.poll(seen.append)

    assert seen == expected


def test_the_member_apis_history_reads_a_long_chain(
    long_chain: tuple[Coalition, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.member.history import HistoryCache

    co, after = long_chain
    refuse_long_ranges(monkeypatch, co)

    snapshot = HistoryCache(co.client).snapshot()

    assert set(snapshot.models) == {0, 1, after} and snapshot.model(after).proposer == co.hospitals[1].address
