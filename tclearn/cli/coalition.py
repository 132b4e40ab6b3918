"""`tclearn coalition deploy`: deploy the Coalition contract with its founding members; `policy`: write the
acceptance policy record it declares; `up` and `down`: a whole coalition on this machine."""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.live import Live
from rich.table import Table

from tclearn.cli.common import DevAccountOpt, KeystoreOpt, console, signer, user_errors
from tclearn.errors import ConfigError
from tclearn.learning.choices import Attack
from tclearn.learning.defaults import UP_EPOCHS
from tclearn.types import Role, Variant

if TYPE_CHECKING:
    from tclearn.coalition.rounds import CandidateRow
    from tclearn.ledger.predecessor import PredecessorHead

app = typer.Typer(help="Coalitions: deploy and run.", no_args_is_help=True)


@app.command("deploy")
def deploy(
    config: Path = typer.Option(Path("coalition.toml"), "--config", "-c", help="The coalition to deploy."),
    out: Path = typer.Option(Path("deployment.json"), "--out", "-o", help="Where to write the deployment file."),
    url: str | None = typer.Option(None, "--chain", help="JSON-RPC URL (default: [chain] url in the config)."),
    keystore: Path | None = KeystoreOpt,
    dev_account: int | None = DevAccountOpt,
    continue_from: Path | None = typer.Option(
        None,
        "--continue-from",
        help="The deployment file of a coalition (contract v1 or v2) whose head this one's genesis continues: "
        "CONFIG's genesis is replaced by that head, and the link is recorded on chain.",
    ),
) -> None:
    """Deploy a coalition from CONFIG with its [[members]] as founders; the signer only pays for it (it has no
    power over the coalition unless it is a founder): later changes are proposals (`tclearn gov`)."""
    from tclearn.config import load_coalition_config, save_deployment
    from tclearn.ledger.chain import connect
    from tclearn.ledger.client import LedgerClient
    from tclearn.ledger.deployment import deployment_of
    from tclearn.ledger.governance import DEFAULT_MIN_VALIDATORS, Admit, Parameters
    from tclearn.ledger.values import epsilon_units

    cfg = load_coalition_config(config)
    if out.exists():
        raise ConfigError(f"{out} already exists; move it away or choose another --out")
    founders = [Admit(m.address, m.role_flags, m.encryption_key, m.name) for m in cfg.members]
    validators = sum(Role.VALIDATOR in f.roles for f in founders)  # unless set, the floor is what the founders hold
    floor = min(DEFAULT_MIN_VALIDATORS, validators) if cfg.min_validators is None else cfg.min_validators
    governance = {} if cfg.proposal_timeout is None else {"proposal_timeout": cfg.proposal_timeout}
    parameters = Parameters(
        min_validators=floor,
        policy_hash=cfg.policy_hash,
        global_test_set_hash=cfg.global_test_set_hash,
        general_timeout=cfg.general_timeout,
        voting_timeout=cfg.voting_timeout,
        epsilon_cap=0 if cfg.epsilon_cap is None else epsilon_units(cfg.epsilon_cap),
        **governance,
    )
    chain = connect(url or cfg.chain.url, expected_chain_id=cfg.chain.chain_id)
    if chain.embedded:
        raise ConfigError("an embedded chain lives only inside one process; deploy to a node (`tclearn chain up`)")
    variant, genesis_hash, genesis_uri, predecessor = (
        Variant.parse(cfg.variant),
        cfg.genesis_hash,
        cfg.genesis_uri,
        None,
    )
    if continue_from is not None:
        head = predecessor_head(continue_from)
        if head.variant is not variant:
            raise ConfigError(
                f"{continue_from} is a variant {head.variant.name} coalition and {config} says variant {variant.name}: "
                "a coalition continues one of its own variant"
            )
        genesis_hash, genesis_uri, predecessor = head.model_hash, head.uri, head.link
        console.print(
            f"continuing the v{head.version} coalition {head.link.coalition} from its head {head.link.head_id} "
            f"({head.model_hash.hex()[:16]}…)"
        )
    deployer = signer(chain, keystore, dev_account)
    client, tx = LedgerClient.deploy(
        chain,
        deployer,
        variant=variant,
        genesis_hash=genesis_hash,
        genesis_uri=genesis_uri,
        parameters=parameters,
        founders=founders,
        predecessor=predecessor,
    )
    deployment = deployment_of(client, tx.block_number, tx.tx_hash, cfg.variant)
    save_deployment(deployment, out)
    console.print(
        f"Coalition (variant {cfg.variant}) at [bold]{client.address}[/] on chain {chain.chain_id}, "
        f"block {tx.block_number}, {tx.gas_used} gas -> {out}"
    )
    for f in founders:
        console.print(f"  founder {f.name or f.account} as {', '.join(f.roles.names())}")


def predecessor_head(path: Path) -> PredecessorHead:
    """The head of the coalition the deployment file at `path` names, on its own chain."""
    from tclearn.config import load_deployment
    from tclearn.ledger.chain import EMBEDDED, connect
    from tclearn.ledger.predecessor import read_head

    old = load_deployment(path)
    if old.url == EMBEDDED:
        raise ConfigError(
            f"{path} is a coalition on an embedded chain, which lived only inside the process that ran it"
        )
    return read_head(connect(old.url, expected_chain_id=old.chain_id), old.address)


@app.command("policy")
def policy(
    out: Path = typer.Option(Path("policy.json"), "--out", "-o", help="Where to write the policy record."),
    settings: list[str] = typer.Option(
        [],
        "--set",
        help="A setting other than its default, NAME=VALUE (e.g. max_drift=0.04, privacy.epsilon_cap=8: any "
        "privacy.* setting adds differential privacy rules; watermark.max_ber=0.05 with the founding's watermark.key "
        "and watermark.blob); repeat for more.",
    ),
) -> None:
    """Write an acceptance policy record (its canonical encoding) and print its sha256: store it with `tclearn vault
    put` and give the hash as policy_hash in coalition.toml."""
    from tclearn.coalition.policy import AcceptancePolicy, PrivacyPolicy, WatermarkPolicy

    sections: dict[str, Any] = {"privacy": PrivacyPolicy, "watermark": WatermarkPolicy}
    with user_errors():
        given: dict[str, Any] = {}
        grouped: dict[str, dict[str, object]] = {name: {} for name in sections}
        plain = [n for n in AcceptancePolicy.settings() if n not in sections]
        names = [*plain, *(f"{s}.{f.name}" for s, kind in sections.items() for f in fields(kind) if f.name != "schema")]
        for item in settings:
            name, sep, value = item.partition("=")
            if not sep or name not in names:
                raise ConfigError(f"--set takes NAME=VALUE with NAME one of {', '.join(names)}; got {item!r}")
            section, _, key = name.rpartition(".")
            group = grouped[section] if section else given
            kind = {f.name: f for f in fields(sections[section] if section else AcceptancePolicy)}[key]
            group[key] = _setting(name, value, str if kind.default is MISSING else type(kind.default))
        if grouped["watermark"] and not {"key", "blob"} <= set(grouped["watermark"]):
            raise ConfigError(
                "watermark.* settings need watermark.key and watermark.blob: the sha256 of the coalition's key record "
                "and the vault blob holding it, as founding set them (the current policy's)"
            )
        for section, kind in sections.items():
            given[section] = kind(**grouped[section]) if grouped[section] else None
        record = AcceptancePolicy(**given)
        out.write_bytes(record.encode())
        typer.echo(record.sha256())


def _setting(name: str, value: str, kind: type) -> object:
    """A `--set` value as its setting's type (a bool from true/false); `ConfigError` naming the setting."""
    if kind is bool:
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"--set {name} takes true or false, got {value!r}")
        return value.lower() == "true"
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"--set {name} takes a {kind.__name__}, got {value!r}") from None


def _rounds_table(rows: list[CandidateRow]) -> Table:
    table = Table(title="Rounds, driven through the member APIs and decided by the node daemons")
    for column in ("round", "proposer", "job", "candidate", "general", "approve", "reject", "state", "seconds"):
        table.add_column(column)
    for r in rows:
        proposer = f"{r.proposer} [red](byzantine)[/]" if r.byzantine else r.proposer
        candidate = "" if r.id is None else str(r.id)
        state = r.state if r.error is None else f"{r.state}: {r.error}"
        table.add_row(
            str(r.round),
            proposer,
            (r.job or "")[:8],
            candidate,
            r.general,
            str(r.approvals),
            str(r.rejections),
            state,
            str(r.seconds),
        )
    return table


@app.command("up")
def up(
    members: int = typer.Option(4, "--members", help="Hospitals, each a member API and a node daemon."),
    byzantine: int = typer.Option(1, "--byzantine", help="How many of them attack (the last ones)."),
    attack: list[Attack] = typer.Option(
        [Attack.SIGN_FLIP.value], "--attack", help="What a Byzantine member submits; repeat it for several."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="The acceptance policy to found with (a record from `tclearn coalition policy`)."
    ),
    watermark: bool = typer.Option(
        False, "--watermark", help="Found with a coalition watermark every candidate must carry (variants A and B)."
    ),
    chain: str = typer.Option("anvil", "--chain", help="anvil, ganache, or a loopback JSON-RPC URL."),
    variant: str = typer.Option("B", "--variant", help="A (public), B (envelope-encrypted) or C (CKKS, supervisor)."),
    rounds: int = typer.Option(4, "--rounds", help="Rounds to drive through the member APIs."),
    epochs: int = typer.Option(UP_EPOCHS, "--epochs", help="Epochs per increment."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("out/coalition"), "--out", help="Folder for configs, keys, data, logs, state."),
    detach: bool = typer.Option(False, "--detach", help="Leave it running; stop it with `tclearn coalition down`."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Start a whole coalition on loopback — chain, vault, a member API and a node daemon per hospital, the
    auditor — drive ROUNDS through the member APIs, print the dashboard URL, and stop everything on Ctrl-C."""
    from tclearn.coalition.declared import policy_file
    from tclearn.simulation import processes
    from tclearn.simulation.up import UpSettings, drive_round, started, summary

    with user_errors():
        settings = UpSettings(
            members=members,
            byzantine=byzantine,
            attack=tuple(attack),
            variant=Variant.parse(variant),
            rounds=rounds,
            seed=seed,
            epochs=epochs,
            chain=chain,
            out=out,
            policy=None if policy is None else policy_file(policy),
            watermark=watermark,
        )
        say = console.print if not as_json else (lambda _m: None)
        with started(settings, on_step=lambda m: say(f"[dim]{m}[/]")) as (run, client):
            rows: list[CandidateRow] = []

            def show(row: CandidateRow) -> None:
                if not rows or rows[-1] is not row:
                    rows.append(row)
                if live is not None:
                    live.update(_rounds_table(rows))

            live = None if as_json else Live(_rounds_table([]), console=console, refresh_per_second=4)
            with live or nullcontext():
                for index in range(settings.rounds):
                    drive_round(run, client, settings, index, show)
            result = summary(rows, client, run)
            if as_json:
                typer.echo(json.dumps(result, indent=2))
            else:
                console.print(
                    f"{result['committed']} committed, {result['rejected']} rejected "
                    f"({result['poisoned_committed']} poisoned committed, "
                    f"{result['honest_rejected']} honest rejected); "
                    f"head is model {result['head']}.\nDashboard: [bold]{result['dashboard']}[/]   "
                    f"member APIs: {', '.join(result['members'].values())}   logs: {run.folder / 'logs'}"
                )
            if detach:
                processes.detach(run)
                say(f"Detached; stop it with [bold]tclearn coalition down --out {out}[/]")
                return
            say("Running; Ctrl-C stops every process.")
            processes.wait_for_interrupt(run)
            say("Stopping…")
        say("Every process stopped.")


@app.command("down")
def down(
    out: Path = typer.Option(Path("out/coalition"), "--out", help="The folder `coalition up --detach` used."),
) -> None:
    """Stop a coalition started with `tclearn coalition up --detach`."""
    from tclearn.simulation import processes

    with user_errors():
        stopped = processes.down(out)
        console.print(f"Stopped {len(stopped)} process(es): {', '.join(stopped) or 'none was still running'}")
