"""The member API's governance routes: read the coalition's proposals; as this hospital (its operator), propose
a change, vote on a proposal, execute an approved one (docs/member-api.md, "Governance")."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from services.common import error_responses
from services.member.auth import Authenticated, Caller
from services.member.schemas import (
    AdmitIn,
    BallotIn,
    ParametersIn,
    ProposalIn,
    ProposalOut,
    RemoveIn,
    RolesIn,
    SupervisorIn,
)
from tclearn.coalition.policy import AcceptancePolicy, PrivacyPolicy, WatermarkPolicy
from tclearn.coalition.proposals import (
    key_bytes,
    parameters_change,
    privacy_cap,
    proposal_json,
    store_policy,
    supervisor_rotation,
)
from tclearn.errors import AccessDenied, ConfigError, NotFoundError
from tclearn.ledger.governance import Action, Admit, Remove, SetRoles
from tclearn.site.open import Site
from tclearn.types import Role

READ_ERRORS = error_responses(401, 403, 404)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 422)


def policy_of(settings: dict[str, object]) -> AcceptancePolicy:
    """An acceptance policy from its settings (absent ones take their defaults); `ConfigError` naming an unknown."""
    unknown = sorted(set(settings) - set(AcceptancePolicy.settings()))
    if unknown:
        raise ConfigError(
            f"unknown policy setting(s) {', '.join(unknown)}; expected some of {', '.join(AcceptancePolicy.settings())}"
        )
    try:
        for name, section in (("privacy", PrivacyPolicy), ("watermark", WatermarkPolicy)):
            given = settings.get(name)
            if isinstance(given, dict):
                settings = {**settings, name: section(**given)}
        return AcceptancePolicy(**settings)  # type: ignore[arg-type]
    except TypeError:  # a setting of the wrong type, compared with its bound
        raise ConfigError(f"policy settings {settings} are not all numbers (aggregator: a name)") from None


def action_of(body: AdmitIn | RolesIn | RemoveIn | ParametersIn | SupervisorIn, site: Site) -> Action:
    """The action a request body asks for; a new policy's record is stored in the site's vault first."""
    if isinstance(body, AdmitIn):
        return Admit(body.account, Role.parse(body.roles), key_bytes(body.encryption_key, "encryption_key"), body.name)
    if isinstance(body, RolesIn):
        return SetRoles(body.account, Role.parse(body.roles))
    if isinstance(body, RemoveIn):
        return Remove(body.account)
    if isinstance(body, SupervisorIn):
        return supervisor_rotation(body.from_, body.to)
    test_set = body.global_test_set_hash
    policy = None if body.policy is None else policy_of(body.policy)
    return parameters_change(
        site.client.parameters(),
        None if policy is None else store_policy(site.coalition.store, policy),
        general_timeout=body.general_timeout,
        voting_timeout=body.voting_timeout,
        proposal_timeout=body.proposal_timeout,
        min_validators=body.min_validators,
        global_test_set_hash=None if test_set is None else key_bytes(test_set, "global_test_set_hash"),
        epsilon_cap=privacy_cap(policy, body.epsilon_cap),
    )


def _operator(who: Caller, what: str) -> None:
    if not who.operator:
        raise AccessDenied(f"{what} signs a transaction as this hospital: its operator does it")


def governance_router(site: Site) -> APIRouter:
    """The /gov routes of `site`'s member API; writes sign as the site's account."""
    router = APIRouter(prefix="/gov", tags=["governance"])
    client, account = site.client, site.hospital.account

    def out(proposal_id: int) -> ProposalOut:
        if not 0 <= proposal_id < client.proposal_count():
            raise NotFoundError(f"no proposal with id {proposal_id}; GET /gov/proposals lists them")
        names = {m.address: m.name for m in client.members()}
        return ProposalOut(**proposal_json(client.proposal(proposal_id), names))

    def every() -> list[ProposalOut]:
        names = {m.address: m.name for m in client.members()}
        return [ProposalOut(**proposal_json(p, names)) for p in client.proposals()]

    @router.get("/proposals", responses=READ_ERRORS)
    async def list_proposals(_who: Authenticated) -> list[ProposalOut]:
        """Every proposal, oldest first, with its tally, state and ballots."""
        return await run_in_threadpool(every)

    @router.get("/proposals/{proposal_id}", responses=READ_ERRORS)
    async def get_proposal(proposal_id: int, _who: Authenticated) -> ProposalOut:
        return await run_in_threadpool(out, proposal_id)

    @router.post("/proposals", status_code=201, responses=WRITE_ERRORS)
    async def propose(body: ProposalIn, who: Authenticated) -> ProposalOut:
        """Proposes the change the body describes (its `kind` says which) as this hospital; its approval counts."""
        _operator(who, "proposing")

        def made() -> ProposalOut:
            return out(client.propose(account, action_of(body, site)).id)

        return await run_in_threadpool(made)

    @router.post("/proposals/{proposal_id}/ballot", responses=WRITE_ERRORS)
    async def ballot(proposal_id: int, body: BallotIn, who: Authenticated) -> ProposalOut:
        """Approves or rejects a pending proposal as this hospital (once)."""
        _operator(who, "voting")

        def cast() -> ProposalOut:
            out(proposal_id)  # 404 for an unknown proposal
            client.ballot(account, proposal_id, body.approve)
            return out(proposal_id)

        return await run_in_threadpool(cast)

    @router.post("/proposals/{proposal_id}/execute", responses=WRITE_ERRORS)
    async def execute(proposal_id: int, who: Authenticated) -> ProposalOut:
        """Executes a proposal two thirds of its eligible members approved, before its deadline."""
        _operator(who, "executing")

        def done() -> ProposalOut:
            out(proposal_id)
            client.execute(account, proposal_id)
            return out(proposal_id)

        return await run_in_threadpool(done)

    return router
