"""The auditor service: a read-only dashboard and JSON API over a coalition's chain and vault.

    GET  /                        the dashboard (static HTML + JS, no network beyond this service; /static, /shared)
    GET  /health                  chain reachable, the head the auditor has read up to         200
    GET  /api/lineage             every model: state, parent, proposer, general, votes, hashes    200
    GET  /api/models/{id}         one model with its votes (scores, evidence, strata), blob checks 200 / 404
    GET  /api/integrity           the last check of every blob (unread ones are read now)         200
    POST /api/integrity           re-hash every blob now                                          200
    POST /api/integrity/{id}      re-hash one model's blobs now                                   200 / 404
    GET  /api/access-log          the vault's access log (service or database, see settings)     200 / 404
    GET  /api/scores              the score on G of every voted-on model over time                200
    GET  /api/governance          every governance proposal, its tally, state and ballots         200
    GET  /api/privacy             each member's privacy budget, increments, the accountant's composition 200
    GET  /report.html             the audit report as one self-contained HTML page                200
    GET  /report.json             the same as JSON: audit verdict, history, integrity, scores     200

Everything but /, /static, /shared and /health needs `Authorization: Bearer <auditor token>`: the token whose sha256 is
`token_sha256` in the settings (`tclearn auditor token` makes one; `tclearn auditor serve` without one makes a
token for that run and prints the dashboard's URL with it). The dashboard reads the token from the URL's
fragment (`/#token=...`, never sent to the server) or asks for it once, and keeps it for the browser tab.

The chain is followed incrementally (`ChainFollower`): each request reads only blocks not seen before.
Run it with `tclearn auditor serve`, or `uvicorn --factory services.auditor.app:app_from_env` with
`TCLEARN_AUDITOR_*` variables (`TCLEARN_AUDITOR_CONFIG` naming a TOML file; docs/deploy.md, "Settings").
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles

from services.auditor.schemas import (
    AccessEntry,
    Health,
    Integrity,
    Lineage,
    ModelDetail,
    PrivacyAudit,
    ScorePoint,
)
from services.common import LogLimit, error_responses, mount_shared_static, page, service_app
from services.member.schemas import ProposalOut
from tclearn.audit.config import AccessLog, AuditorSettings, no_access_log, open_access_log, open_store
from tclearn.audit.evidence import all_evidence, votes_evidence
from tclearn.audit.follow import ChainFollower
from tclearn.audit.integrity import BlobChecks, candidate_of
from tclearn.audit.privacy import declared_privacy, privacy_json
from tclearn.audit.report import write_report
from tclearn.audit.token import check_bearer
from tclearn.audit.verify import audit
from tclearn.audit.views import lineage_json, model_json, scores_json
from tclearn.coalition.proposals import proposal_json
from tclearn.config import settings_from_env
from tclearn.ledger.deployment import open_deployment
from tclearn.ledger.history import to_json
from tclearn.records import Privacy
from tclearn.state.db import Database
from tclearn.types import ModelState
from tclearn.vault.store import BlobStore

STATIC = Path(__file__).parent / "static"
AUDITOR_SCHEME = HTTPBearer(auto_error=False, description="the auditor token (its sha256 is token_sha256)")
AUTH_ERRORS = error_responses(401, 422)


def create_app(
    follower: ChainFollower,
    store: BlobStore,
    *,
    access_log: AccessLog | None = None,
    label: str = "",
    token_sha256: str | None = None,
) -> FastAPI:
    """The auditor over a chain `follower` and the `store` its blobs live in; `label` names the coalition. Its
    API answers the bearer token whose sha256 is `token_sha256` (None: nobody)."""
    checks = BlobChecks(store)
    metadata: dict[bytes, Privacy | None] = {}  # metadata hash -> the Privacy it declares (blobs never change)
    app = service_app("tclearn auditor")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    mount_shared_static(app)

    def auditor(request: Request, _bearer: Annotated[Any, Security(AUDITOR_SCHEME)] = None) -> None:
        """Checks the header itself (the scheme is declared for the OpenAPI document): every refusal named."""
        check_bearer(request.headers.get("authorization"), token_sha256)

    api = APIRouter(dependencies=[Depends(auditor)], responses=AUTH_ERRORS)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return page(STATIC / "index.html")

    @app.get("/health", response_model=Health)
    def health() -> dict[str, Any]:
        history = follower.refresh()
        return {
            "ok": True,
            "coalition": label or follower.client.address,
            "chain_id": follower.client.chain.chain_id,
            "contract": follower.client.address,
            "read_to_block": follower.reader.position[0],
            "models": len(history.candidates),
            "head": history.head,
            "access_log": access_log is not None,
        }

    @api.get("/api/lineage", response_model=Lineage)
    def lineage() -> dict[str, Any]:
        return {"coalition": label or follower.client.address, **lineage_json(follower.refresh())}

    @api.get("/api/models/{model_id}", response_model=ModelDetail, responses=error_responses(404))
    def model(model_id: int) -> dict[str, Any]:
        history = follower.refresh()
        candidate = candidate_of(history, model_id)
        return model_json(history, model_id, checks.check(history, [model_id]), votes_evidence(store, candidate))

    def integrity(model_ids: list[int] | None, refresh: bool) -> dict[str, Any]:
        blobs = checks.check(follower.refresh(), model_ids, refresh=refresh)
        bad = [b for b in blobs if not b.ok]
        return {
            "ok": not bad,
            "checked": len(blobs),
            "bad": [b.to_json() for b in bad],
            "blobs": [b.to_json() for b in blobs],
        }

    @api.get("/api/integrity", response_model=Integrity)
    def last_integrity() -> dict[str, Any]:
        return integrity(None, refresh=False)

    @api.post("/api/integrity", response_model=Integrity)
    def verify_all() -> dict[str, Any]:
        return integrity(None, refresh=True)

    @api.post("/api/integrity/{model_id}", response_model=Integrity, responses=error_responses(404))
    def verify_model(model_id: int) -> dict[str, Any]:
        return integrity([model_id], refresh=True)

    @api.get("/api/access-log", response_model=list[AccessEntry], responses=error_responses(404))
    def access(account: str | None = None, sha256: str | None = None, limit: LogLimit = 200) -> list[dict[str, Any]]:
        if access_log is None:
            raise no_access_log()
        return access_log(account, sha256, max(1, min(limit, 1000)))

    @api.get("/api/scores", response_model=list[ScorePoint])
    def scores() -> list[dict[str, Any]]:
        return scores_json(follower.refresh())

    @api.get("/api/governance", response_model=list[ProposalOut])
    def governance() -> list[dict[str, Any]]:
        """Every proposal read from the chain: what it does, who proposed it, its tally and each ballot."""
        names = {address: m.name for address, m in follower.refresh().members.items()}
        return [proposal_json(p, names) for p in follower.client.proposals()]

    def privacy() -> dict[str, Any]:
        history = follower.refresh()
        return privacy_json(history, declared_privacy(store, history, metadata))

    @api.get("/api/privacy", response_model=PrivacyAudit)
    def privacy_budgets() -> dict[str, Any]:
        """Each member's spending as the chain counts it (from the logs), its increments, the accountant's tighter
        composition of their mechanisms (read from the candidates' metadata), and findings where the chain's
        charges are not what the candidates declare."""
        return privacy()

    def summary(verdict_ok: bool) -> dict[str, Any]:
        history = follower.refresh()
        states = [c.state for c in history.candidates.values()]
        return {
            "coalition": label or follower.client.address,
            "chain": follower.client.chain.kind,
            "contract": follower.client.address,
            "committed": states.count(ModelState.COMMITTED),
            "rejected": states.count(ModelState.REJECTED),
            "expired": states.count(ModelState.EXPIRED),
            "stale": states.count(ModelState.STALE),
            "audit_ok": verdict_ok,
        }

    @api.get("/report.json", responses={200: {"content": {"application/json": {}}, "description": "the report"}})
    def report_json() -> JSONResponse:
        history = follower.refresh()
        verdict = audit(history, store, metadata)
        document = {
            "generated_at": time.time(),
            "summary": summary(verdict.ok),
            "audit": verdict.to_dict(),
            "integrity": [b.to_json() for b in checks.check(history, refresh=True)],
            "scores": scores_json(history),
            "privacy": privacy(),
            "history": to_json(history),
        }
        return JSONResponse(document, headers={"content-disposition": 'attachment; filename="audit-report.json"'})

    @api.get("/report.html", response_class=HTMLResponse)
    def report_html() -> HTMLResponse:
        history = follower.refresh()
        verdict = audit(history, store, metadata)
        with tempfile.TemporaryDirectory(prefix="tclearn-report-") as folder:
            evidence = all_evidence(store, history)
            path = write_report(
                Path(folder), history, summary(verdict.ok), audit=verdict, embed_images=True, evidence=evidence
            )
            page = path.read_text(encoding="utf-8")
        return HTMLResponse(page, headers={"content-disposition": 'inline; filename="audit-report.html"'})

    app.include_router(api)
    return app


def app_for(settings: AuditorSettings) -> FastAPI:
    """The auditor as `settings` describe it: the deployment's chain, its vault and the auditor's own state."""
    deployment, client = open_deployment(settings.deployment, settings.chain)
    store = open_store(settings)
    follower = ChainFollower(
        client, Database(settings.state), start_block=deployment.block, confirmations=settings.confirmations
    )
    label = f"variant {deployment.variant} coalition ({settings.deployment.name})"
    access_log = open_access_log(settings, store)
    app = create_app(follower, store, access_log=access_log, label=label, token_sha256=settings.token_sha256)
    app.state.settings = settings
    return app


def app_from_env() -> FastAPI:
    """The service as `TCLEARN_AUDITOR_*` variables over the file in `TCLEARN_AUDITOR_CONFIG` describe it."""
    return app_for(settings_from_env(AuditorSettings))
