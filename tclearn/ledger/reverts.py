"""Turns a contract revert, however the node reports it, into a `ContractRevert` naming the error.

JSON-RPC nodes (Anvil, Ganache) report the revert data in web3's `ContractCustomError.data`; the
embedded eth-tester chain raises `TransactionFailed("execution reverted: b'...'")`. Both end here.
"""

from __future__ import annotations

import ast
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import to_checksum_address
from hexbytes import HexBytes

from tclearn.errors import ContractRevert
from tclearn.ledger.artifact import Artifact
from tclearn.ledger.governance import ProposalState, epsilon_text
from tclearn.types import ModelState

_MESSAGES = {
    "NotMember": "{account} is not an active member with the member role",
    "NotValidator": "{account} is not an active validator",
    "NotGeneral": "{caller} is not the general of this candidate (the general is {general})",
    "NotEligible": "{validator} became a validator after candidate {id} was submitted and cannot vote on it",
    "AlreadyMember": "{account} is already an active member",
    "InvalidRoles": "roles bitmask {roles} is invalid (1..15: member=1, validator=2, auditor=4, supervisor=8)",
    "InvalidVariant": "variant {variant} is invalid (1=A, 2=B, 3=C)",
    "InvalidTimeout": "the general, voting and proposal timeouts must be positive",
    "ZeroAddress": "the zero address is not allowed",
    "ZeroHash": "a zero hash is not allowed",
    "UnknownModel": "no model with id {id}",
    "StaleParent": "parent model {parentId} is not the head ({head}); rebase on the head and submit again",
    "DuplicateModel": "model hash {modelHash} was already submitted as model {existingId}",
    "NoValidators": "no validator other than the proposer is registered; nobody could check this candidate",
    "NoOtherGeneral": "no other eligible validator can be drawn as general for candidate {id}",
    "AlreadyVoted": "{validator} has already voted on candidate {id}",
    "ProposerCannotVote": "{proposer} proposed candidate {id} and cannot vote on it",
    "WrongState": "candidate {id} is {state}, which does not allow this",
    "DeadlinePassed": "the deadline of candidate {id} passed at {deadline}",
    "DeadlineNotReached": "the deadline of candidate {id} is {deadline}, not reached yet",
    "TooManyMembers": "the member registry is full",
    "NoFounders": "a coalition needs at least one founder: nobody could change it afterwards",
    "InvalidAction": "action kind {kind} is not one (1=admit, 2=set roles, 3=remove, 4=set parameters, "
    "5=rotate supervisor)",
    "UnknownProposal": "no proposal with id {proposal}",
    "ProposalNotPending": "proposal {proposal} is {state}, no longer pending",
    "ProposalExpired": "the deadline of proposal {proposal} passed at {deadline}; propose it again",
    "ProposalNotApproved": "proposal {proposal} has {approvals} approvals of the {needed} it needs",
    "ActionMismatch": "the action given is not the one proposal {proposal} was made with",
    "NotBallotEligible": "{member} was not an active member when proposal {proposal} was made and cannot ballot on it",
    "AlreadyBalloted": "{member} has already balloted on proposal {proposal}",
    "TooFewValidators": "this would leave {remaining} active validators, fewer than the {needed} required",
    "NotSupervisor": "{account} is not an active member holding the supervisor role",
    "NoMembersLeft": "this would leave the coalition without an active member: nobody could ever change it again",
    "BadSignature": "signed vote {index} has an invalid signature (zero recovery or a malleable high s)",
    "UnsortedVotes": "signed vote {index} is out of order: signers must come in ascending address order",
    "NoDecision": "the votes leave candidate {id} undecided ({approvals} approvals, {rejections} rejections of "
    "{eligible} eligible): collect more signatures",
    "OverBudget": "{member} has spent epsilon {spent_eps} of its privacy budget ({cap_text}); a charge of "
    "{charge_eps} would exceed it: train with less privacy spending, or have the coalition raise the cap "
    "(`tclearn gov propose policy --epsilon-cap E`)",
    "NotCommitted": "model {id} is {state}, not committed: only a committed model (the head or one of its lineage) "
    "may be exported",
}

_EPSILONS = ("spent", "charge", "cap")  # OverBudget's counts of epsilon in millionths, shown as decimals too


def _hex_payload(value: Any) -> bytes | None:
    if isinstance(value, str) and value.startswith("0x") and len(value) >= 10:
        return bytes(HexBytes(value))
    if isinstance(value, dict):  # Ganache: {"result": "0x...", ...}; some nodes: {"data": "0x..."}
        for key in ("data", "result"):
            found = _hex_payload(value.get(key))
            if found is not None:
                return found
    return None


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert bytes carried by `exc`, or None if it is not a revert."""
    for candidate in (getattr(exc, "data", None), *exc.args[1:]):
        found = _hex_payload(candidate)
        if found is not None:
            return found
    if type(exc).__name__ == "TransactionFailed" and exc.args:  # the embedded eth-tester chain
        tail = str(exc.args[0]).removeprefix("execution reverted: ")
        if tail.startswith(("b'", 'b"')):
            try:
                value = ast.literal_eval(tail)
            except (SyntaxError, ValueError):
                return None
            return value if isinstance(value, bytes) else None
        return tail.encode()
    return None


def _render(value: Any, type_: str, name: str, error: str) -> Any:
    if type_ == "address":
        return to_checksum_address(value)
    if type_ == "bytes32":
        return "0x" + bytes(value).hex()
    if name == "state":
        return (ProposalState if error == "ProposalNotPending" else ModelState)(value).name.lower()
    if name in ("parentId", "existingId", "id") and value == 2**256 - 1:
        return "(none)"
    return value


def decode_revert(artifact: Artifact, data: bytes, action: str) -> ContractRevert:
    """A `ContractRevert` for `data`, with the custom error's name and a readable message."""
    spec = artifact.errors.get(data[:4])
    if spec is None:
        reason = data.decode(errors="replace") if data and data[:4] != b"\x08\xc3y\xa0" else data.hex()
        return ContractRevert(f"{action} reverted: {reason or 'no reason given'}", error="Unknown")
    values = abi_decode(list(spec.arg_types), data[4:])
    args = {n: _render(v, t, n, spec.name) for n, t, v in zip(spec.arg_names, spec.arg_types, values, strict=True)}
    return refusal(action, spec.name, args)


def refusal(action: str, error: str, args: dict[str, Any]) -> ContractRevert:
    """The `ContractRevert` for custom error `error` with readable `args` (addresses checksummed, hashes and
    ids rendered as `decode_revert` renders them), so that every ledger words a refusal the same way."""
    words = dict(args)
    if error == "OverBudget":
        words.update({f"{n}_eps": epsilon_text(args[n]) for n in _EPSILONS})
        words["cap_text"] = f"cap {words['cap_eps']}" if args["cap"] else "no cap, but a uint64 counter"
    detail = _MESSAGES.get(error, error).format(**words)
    return ContractRevert(f"{action} refused ({error}): {detail}", error=error, args=args)
