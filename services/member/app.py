"""The member service: one hospital's window on its coalition (FastAPI; see docs/member-api.md).

    GET  /health                     liveness (no authentication)
    GET  /coalition                  chain, contract, variant, head, this site
    GET  /models                     every model on chain with its state and vote counts
    GET  /models/{id}                one model with its votes and scores
    GET  /models/{id}/blob           the model file, as the variant allows (A: anyone; B: operator; C: no one)
    POST /models/{id}/predict        image upload -> boxes JSON, or the overlay PNG with ?format=png
    POST /jobs/train                 train an increment on local data and submit it, in the background
    POST /jobs/finetune              fine-tune the head on local data for this hospital alone (operator only)
    GET  /jobs                       the caller's jobs
    GET  /jobs/{id}                  one of the caller's jobs (progress, candidate, error)
    POST /jobs/{id}/cancel           stop one of the caller's jobs
    GET  /console                    the member console, a page for the hospital's staff (`console.py`)
    POST /exports                    export a committed model with this hospital's fingerprint (operator only)
    GET  /exports                    this hospital's exports on chain
    GET  /exports/{id}/model         an export's file as this site wrote it (operator only)
    POST /active/rank                rank the site's unlabelled images for annotation (operator only)
    GET  /active/rankings/{id}/thumbnails/{file}  a ranked image's thumbnail PNG (operator only)
    GET  /privacy                    every member's privacy budget (spent, cap, left) and this hospital's charges
    GET  /gov/proposals              every governance proposal with its tally and ballots
    GET  /gov/proposals/{id}         one proposal
    POST /gov/proposals              propose a change as this hospital (operator only)
    POST /gov/proposals/{id}/ballot  approve or reject it as this hospital (operator only)
    POST /gov/proposals/{id}/execute execute an approved proposal (operator only)

Every route but /health needs the operator token or a peer's signed request (`auth.py`); errors are
`{"code", "message"}` mapped from `TclearnError` in `services.common`. Run it with
`tclearn member serve --config member.toml` or `uvicorn --factory services.member.app:app_from_env` with
`TCLEARN_MEMBER_CONFIG` naming the file (`TCLEARN_MEMBER_*` variables override it: docs/deploy.md, "Settings").
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from enum import StrEnum
from typing import Annotated

from fastapi import FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from starlette.datastructures import UploadFile

from services.common import error_responses, service_app
from services.member.auth import Authenticated, Authenticator
from services.member.console import install_console
from services.member.governance import governance_router
from services.member.history import HistoryCache, Snapshot
from services.member.schemas import (
    BoxOut,
    CoalitionInfo,
    ExportIn,
    ExportOut,
    FinetuneIn,
    Health,
    JobOut,
    ModelDetail,
    ModelSummary,
    Prediction,
    PrivacyOut,
    RankIn,
    RankingOut,
    SiteInfo,
)
from services.member.uploads import ModelCache, check_committed, check_size, read_upload, upload_body
from tclearn import __version__
from tclearn.coalition.backend import tensors
from tclearn.errors import AccessDenied, ConflictError, DataError
from tclearn.learning.overlays import overlay
from tclearn.learning.predict import check_predictable, predict_boxes
from tclearn.ledger.directory import ChainDirectory
from tclearn.site.active import RankRequest, rank_for_api, thumbnail_path
from tclearn.site.config import MemberSettings, SiteConfig, site_from_env
from tclearn.site.exports import export_to, listed, own_file
from tclearn.site.finetune import FinetuneOptions
from tclearn.site.jobs import JobRunner
from tclearn.site.open import Site, open_site
from tclearn.state.db import Database
from tclearn.vault.audience import Audience, CoalitionId, service_url
from tclearn.vault.replay import ReplayStore
from tclearn.vault.replay_db import open_replay_store
from tclearn.vault.signing import RequestVerifier

AUTH_ERRORS = error_responses(401, 403, 422)


class ImageFormat(StrEnum):
    JSON = "json"
    PNG = "png"


def create_app(
    site: Site,
    *,
    db: Database | None = None,
    operator_token: str | None = None,
    max_skew_s: int = 300,
    history_ttl: float = 1.0,
    audience: Audience | None = None,
    replay: ReplayStore | None = None,
) -> FastAPI:
    """The member API of `site`; jobs live in `db` (default: the site's `state` database). Peers sign their
    requests for `audience` (default: the site's `public_url`, else http://host:port, and its coalition)."""
    db = db or Database(site.config.state)
    directory = site.coalition.directory or ChainDirectory(site.client, ttl=30.0)
    if audience is None:
        coalition_id = CoalitionId.of_client(site.client)
        audience = Audience.of(service_url(site.config.public_url, site.config.server), coalition_id)
    verifier = RequestVerifier(directory, audience, max_skew_s, replay=replay)
    authenticator = Authenticator(verifier, operator_token, site.config.operator_token_env)
    runner = JobRunner(site, db)
    history = HistoryCache(site.client, history_ttl)
    models = ModelCache(site)
    sizes: dict[str, int] = {}
    co = site.coalition

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(runner.shutdown)

    app = service_app(
        "tclearn member",
        description="One hospital's member service: its coalition's models, training jobs and predictions.",
        lifespan=lifespan,
    )
    app.state.runner, app.state.history, app.state.authenticator = runner, history, authenticator
    app.state.audience = audience

    async def current() -> Snapshot:
        return history.snapshot() if history.fresh else await run_in_threadpool(history.snapshot)

    async def snapshot_model(model_id: int) -> ModelDetail:
        return (await current()).model(model_id)

    @app.get("/health")
    async def health() -> Health:
        return Health(status="ok", site=site.config.name, version=__version__)

    @app.get("/coalition", responses=AUTH_ERRORS)
    async def coalition(_who: Authenticated) -> CoalitionInfo:
        snap = await current()
        return CoalitionInfo(
            chain_id=site.client.chain.chain_id,
            chain=site.client.chain.kind,
            contract=site.client.address,
            variant=co.backend.variant.name,
            head=snap.head,
            models=len(snap.models),
            active_members=snap.active_members,
            site=SiteInfo(name=site.config.name, address=site.hospital.address),
        )

    @app.get("/models", response_model=list[ModelSummary], responses=AUTH_ERRORS)
    async def list_models(_who: Authenticated) -> Response:
        snap = await current()
        return Response(snap.models_json, media_type="application/json")

    @app.get("/models/{model_id}", responses={**AUTH_ERRORS, **error_responses(404)})
    async def get_model(model_id: int, _who: Authenticated) -> ModelDetail:
        return await snapshot_model(model_id)

    @app.get("/privacy", responses=AUTH_ERRORS)
    async def privacy(_who: Authenticated) -> PrivacyOut:
        """Every member's privacy budget as the chain counts it (epsilon spent: the plain sum of its charges; the
        cap; what is left) and this hospital's own charges, from the contract's logs."""
        return (await current()).privacy(site.hospital.address)

    @app.get(
        "/models/{model_id}/blob",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "the model's safetensors file"},
            **AUTH_ERRORS,
            **error_responses(404, 409, 502),
        },
    )
    async def download(model_id: int, who: Authenticated) -> Response:
        """Variant A: the safetensors blob, streamed from the vault and re-hashed. Variant B: decrypted with
        this hospital's key for its operator only; peers get 403 (they read the sealed blob from the vault).
        Variant C: 409, the model is encrypted under the supervisor's key."""
        model = await snapshot_model(model_id)
        headers = {
            "content-disposition": f'attachment; filename="model-{model_id}.safetensors"',
            "x-tclearn-model-hash": model.model_hash,
        }
        backend = tensors(co.backend, f"model {model_id}")
        if backend.sealed:
            if not who.operator:
                raise AccessDenied(
                    f"model {model_id} is sealed (variant B): only this hospital's operator gets it decrypted here; "
                    "peers read the sealed blob and their keyring from the vault"
                )
            chunks = await run_in_threadpool(lambda: b"".join(backend.clear_chunks(site.hospital, model.model_hash)))
            return Response(chunks, media_type="application/octet-stream", headers=headers)
        size = sizes.get(model.model_hash)
        if size is None:
            size = await run_in_threadpool(co.store.size, model.model_hash)
            if size is None:
                raise ConflictError(f"the vault has lost model {model_id} ({model.model_hash})", model_id=model_id)
            sizes[model.model_hash] = size  # content-addressed: a blob's size never changes
        chunks_iter: Iterator[bytes] = co.store.iter_blob(model.model_hash)
        return StreamingResponse(
            chunks_iter, media_type="application/octet-stream", headers={**headers, "content-length": str(size)}
        )

    @app.post(
        "/models/{model_id}/predict",
        response_model=Prediction,
        responses={
            200: {"content": {"image/png": {}}, "description": "boxes as JSON, or the overlay with ?format=png"},
            **AUTH_ERRORS,
            **error_responses(400, 404, 409, 413),
        },
        openapi_extra=upload_body(),
    )
    async def predict(
        model_id: int,
        request: Request,
        who: Authenticated,
        format: ImageFormat = ImageFormat.JSON,
        threshold: Annotated[float, Query(gt=0, lt=1)] = 0.5,
        min_area: Annotated[int, Query(ge=1, le=1 << 24)] = 1,
    ) -> Response:
        """Boxes around what a committed model finds in one uploaded image (form field `image`: PNG, JPEG,
        TIFF, NIfTI or DICOM, by its file name); `?format=png` answers the overlay picture instead."""
        check_size(request)
        model = await snapshot_model(model_id)
        check_committed(model_id, model.state)
        backend = tensors(co.backend, f"model {model_id}")
        check_predictable(backend.config, threshold, dims=(2,))  # BoxOut and the overlay are 2-D
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise DataError("send the image as the multipart/form-data file field 'image'")
        filename, data = upload.filename or "image", await upload.read()
        image = await run_in_threadpool(read_upload, filename, data)
        network = await run_in_threadpool(models.get, model_id, model.model_hash)
        boxes = await run_in_threadpool(
            predict_boxes, network, backend.config, image, filename, threshold, backend.training.device, min_area
        )
        if format is ImageFormat.PNG:
            picture = io.BytesIO()
            overlay(image, boxes).save(picture, format="PNG")
            return Response(picture.getvalue(), media_type="image/png")
        result = Prediction(
            model_id=model_id,
            image=filename,
            shape=list(image.shape),
            threshold=threshold,
            min_area=min_area,
            boxes=[BoxOut(**asdict(b)) for b in boxes],
        )
        return Response(result.model_dump_json(), media_type="application/json")

    @app.post("/jobs/train", status_code=202, responses={**AUTH_ERRORS, **error_responses(409)})
    async def train(who: Authenticated) -> JobOut:
        """Starts training an increment on this hospital's data from the current head, then stores and submits
        it as a candidate. One job at a time per site: 409 while another runs."""
        return JobOut.of(await run_in_threadpool(runner.start, who.identity))

    @app.post("/jobs/finetune", status_code=202, responses={**AUTH_ERRORS, **error_responses(400, 409)})
    async def finetune(who: Authenticated, options: FinetuneIn | None = None) -> JobOut:
        """Starts fine-tuning the committed head on this hospital's data for its own use: scored on its local
        test set L before and after, written under the site's `finetuned` folder, never stored in the vault or
        submitted. Operator only. The JSON body may override `epochs`, `batch_size` and `lr` of [training].
        409 in variant C, before any increment has committed, and while another job runs."""
        if not who.operator:
            raise AccessDenied("fine-tuning trains on this hospital's data for its own use: its operator starts it")
        chosen = FinetuneOptions(**(options or FinetuneIn()).model_dump())
        return JobOut.of(await run_in_threadpool(runner.start_finetune, who.identity, chosen))

    @app.get("/jobs", responses=AUTH_ERRORS)
    async def list_jobs(who: Authenticated, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[JobOut]:
        return [JobOut.of(j) for j in await run_in_threadpool(runner.jobs, who.identity, limit)]

    @app.get("/jobs/{job_id}", responses={**AUTH_ERRORS, **error_responses(404)})
    async def get_job(job_id: str, who: Authenticated) -> JobOut:
        """One of the caller's jobs; another caller's job is 404, like a missing one (ids do not leak)."""
        return JobOut.of(await run_in_threadpool(runner.get, who.identity, job_id))

    @app.post("/jobs/{job_id}/cancel", responses={**AUTH_ERRORS, **error_responses(404, 409)})
    async def cancel_job(job_id: str, who: Authenticated) -> JobOut:
        """Asks one of the caller's running jobs to stop; poll it until its state is `cancelled`."""
        return JobOut.of(await run_in_threadpool(runner.cancel, who.identity, job_id))

    @app.post("/exports", responses={**AUTH_ERRORS, **error_responses(400, 404, 409)})
    async def export(body: ExportIn, who: Authenticated) -> ExportOut:
        """Exports a committed model with this hospital's own fingerprint (written by distillation on its training
        images): recorded on chain, signed by this hospital, then written to the site's `exports` folder. Operator
        only; answers when done. 404 for an unknown model, 409 for one that is not committed and in variant C."""
        if not who.operator:
            raise AccessDenied("an export is recorded on chain in this hospital's name: its operator asks for it")
        done, _ = await run_in_threadpool(export_to, site, body.model_id)
        return ExportOut(**done.summary(), file=True)

    @app.get("/exports", responses=AUTH_ERRORS)
    async def list_exports(_who: Authenticated) -> list[ExportOut]:
        """This hospital's exports as the chain records them (from its logs, as /models), in id order, with their
        scores where this site holds the file."""
        exported = (await current()).exports
        return [ExportOut.model_validate(e) for e in await run_in_threadpool(listed, site, exported)]

    @app.get(
        "/exports/{export_id}/model",
        response_class=FileResponse,
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "the export's safetensors file"},
            **AUTH_ERRORS,
            **error_responses(404),
        },
    )
    async def export_file(export_id: int, who: Authenticated) -> Response:
        """The fingerprinted copy this site wrote for one of its exports. Operator only."""
        if not who.operator:
            raise AccessDenied("an export's file is this hospital's: only its operator downloads it")
        path = await run_in_threadpool(own_file, site, export_id, (await current()).exports)
        return FileResponse(path, media_type="application/octet-stream", filename=f"export-{export_id}.safetensors")

    @app.post("/active/rank", responses={**AUTH_ERRORS, **error_responses(400, 404, 409)})
    async def active_rank(body: RankIn, who: Authenticated) -> RankingOut:
        """Ranks the images of this site's unlabelled folder (or a sub-folder of it) for annotation by the
        committee's disagreement (or one model's, or at random); the first `budget` are chosen. Operator only;
        answers when done. 409 when fewer than two hospitals' models are committed."""
        if not who.operator:
            raise AccessDenied("a ranking reads this hospital's unlabelled images: its operator asks for it")
        request = RankRequest(
            str(body.budget), body.committee, body.method, body.measure, body.seed, body.diversity, body.density
        )
        ranking_id, ranking = await run_in_threadpool(rank_for_api, site, request, body.unlabelled)
        base = f"/active/rankings/{ranking_id}/"
        rows = [{**r, "thumbnail": base + r["thumbnail"]} for r in ranking["ranked"]]
        return RankingOut.model_validate({**ranking, "ranking_id": ranking_id, "ranked": rows})

    @app.get(
        "/active/rankings/{ranking_id}/thumbnails/{name}",
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}}, **AUTH_ERRORS, **error_responses(404)},
    )
    async def active_thumbnail(ranking_id: str, name: str, who: Authenticated) -> Response:
        """A thumbnail of a ranking this site wrote: the image with the committee's mean probability. Operator
        only."""
        if not who.operator:
            raise AccessDenied("a thumbnail shows this hospital's images: only its operator gets it")
        return FileResponse(thumbnail_path(site, ranking_id, name), media_type="image/png")

    app.include_router(governance_router(site))
    app.state.predictions = install_console(app, site, models, history)
    return app


def app_for(config: SiteConfig) -> FastAPI:
    """The service for a loaded member.toml: opens the site (chain, vault, data) and reads the operator token."""
    app = create_app(
        open_site(config),
        operator_token=os.environ.get(config.operator_token_env) or None,
        replay=open_replay_store(config.replay_store),
    )
    app.state.settings = config
    return app


def app_from_env() -> FastAPI:
    """The service for the member.toml named by `TCLEARN_MEMBER_CONFIG`, under `TCLEARN_MEMBER_*` variables."""
    return app_for(site_from_env(MemberSettings))
