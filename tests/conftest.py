"""Fixtures shared by every test: chains (embedded, and real Anvil/Ganache nodes) and coalitions on them."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

import pytest
from eth_account.signers.local import LocalAccount

from tclearn.coalition.policy import AcceptancePolicy
from tclearn.ledger.chain import Chain, connect, embedded_chain
from tclearn.ledger.client import LedgerClient
from tclearn.ledger.governance import (
    DEFAULT_MIN_VALIDATORS,
    DEFAULT_PROPOSAL_TIMEOUT,
    Action,
    Admit,
    Parameters,
)
from tclearn.ledger.localchain import LocalNode
from tclearn.logs import QUIET_LOGGERS, UVICORN_LOGGERS
from tclearn.types import Role, Variant
from tests.governing import approve, govern

ACCOUNTS = 20


@dataclass
class Coalition:
    """A deployed coalition and the dev accounts playing its parts."""

    chain: Chain
    client: LedgerClient
    deployer: LocalAccount  # sent the deployment; not a member (the contract has no admin)
    hospitals: list[LocalAccount]  # the founders (validators unless said otherwise)
    spare: list[LocalAccount]  # funded accounts that are not members

    def account(self, address: str) -> LocalAccount:
        return next(a for a in [self.deployer, *self.hospitals, *self.spare] if a.address == address)

    def approve(self, action: Action, proposer: LocalAccount | None = None) -> int:
        """A member proposes `action` and active members approve it until two thirds have; returns its id."""
        return approve(self.client, [*self.hospitals, *self.spare], action, proposer).id

    def govern(self, action: Action, proposer: LocalAccount | None = None) -> int:
        """Carries `action` as the coalition does: proposed, approved by two thirds of the active members, executed
        (by the deployer: anyone may); returns the proposal id."""
        accounts = [*self.hospitals, *self.spare]
        executed = govern(self.client, accounts, action, proposer=proposer, executor=self.deployer).event(
            "ProposalExecuted"
        )
        assert executed is not None
        return int(executed.args["proposal"])

    def submit(self, proposer: LocalAccount, parent: int | None = None) -> int:
        parent = self.client.head() if parent is None else parent
        return self.client.submit(proposer, parent, os.urandom(32), "vault://test", os.urandom(32)).model_id

    def open(self, model_id: int, ok: bool = True) -> LocalAccount:
        general = self.account(self.client.get_model(model_id, with_uri=False).general)
        self.client.open_candidate(general, model_id, ok, os.urandom(32))
        return general

    def voters(self, model_id: int) -> list[LocalAccount]:
        proposer = self.client.get_model(model_id, with_uri=False).proposer
        return [h for h in self.hospitals if h.address != proposer]


def deploy_coalition(
    chain: Chain,
    validators: int = 4,
    members: int = 0,
    *,
    general_timeout: int = 600,
    voting_timeout: int = 600,
    proposal_timeout: int = DEFAULT_PROPOSAL_TIMEOUT,
    min_validators: int | None = None,
    variant: Variant = Variant.B,
) -> Coalition:
    """`validators` validating hospitals and `members` member-only ones, all founders ("hospital-0", ...);
    `min_validators` defaults to the protocol's floor, or to `validators` where that is fewer."""
    deployer, *rest = chain.dev_keys
    hospitals = rest[: validators + members]
    founders = [
        Admit(
            h.address, Role.MEMBER | Role.VALIDATOR if i < validators else Role.MEMBER, os.urandom(32), f"hospital-{i}"
        )
        for i, h in enumerate(hospitals)
    ]
    parameters = Parameters(
        policy_hash=bytes.fromhex(AcceptancePolicy().sha256()),  # the default policy (its record: `policy_store`)
        general_timeout=general_timeout,
        voting_timeout=voting_timeout,
        proposal_timeout=proposal_timeout,
        min_validators=min(validators, DEFAULT_MIN_VALIDATORS) if min_validators is None else min_validators,
    )
    client, _ = LedgerClient.deploy(
        chain,
        deployer,
        variant=variant,
        genesis_hash=os.urandom(32),
        genesis_uri="vault://genesis",
        parameters=parameters,
        founders=founders,
    )
    return Coalition(chain, client, deployer, hospitals, rest[validators + members :])


def node_chain(node: LocalNode) -> Chain:
    chain = connect(node.url)
    from tclearn.ledger.accounts import dev_accounts

    chain.dev_keys = dev_accounts(ACCOUNTS)
    return chain


def missing_tool(message: str) -> NoReturn:
    """A test whose tool (a browser, PostgreSQL) is not installed: skipped on a developer's machine, failed in CI
    (`CI` set to anything but empty, 0 or false), which installs every tool and must run every test."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A serve command run in-process (`start_logging`) configures the root logger for the process: put it back,
    so that one test's log level and handler do not write into the next test's captured output."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in (*UVICORN_LOGGERS, *QUIET_LOGGERS))]
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[LocalNode]:
    with LocalNode("anvil", accounts=ACCOUNTS) as node:
        yield node


@pytest.fixture(scope="session")
def ganache_node() -> Iterator[LocalNode]:
    with LocalNode("ganache", accounts=ACCOUNTS) as node:
        yield node


@pytest.fixture
def chain() -> Chain:
    """A fresh embedded chain for each test."""
    return embedded_chain(ACCOUNTS)


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("anvil", marks=pytest.mark.anvil),
        pytest.param("ganache", marks=pytest.mark.ganache),
    ]
)
def any_chain(request: pytest.FixtureRequest) -> Chain:
    """The same test on the embedded chain, a real Anvil node and a real Ganache node."""
    if request.param == "embedded":
        return embedded_chain(ACCOUNTS)
    return node_chain(request.getfixturevalue(f"{request.param}_node"))


@pytest.fixture
def coalition(chain: Chain) -> Coalition:
    """Four validating hospitals on a fresh embedded chain."""
    return deploy_coalition(chain)
