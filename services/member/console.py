"""The member console: a page for the hospital's staff served by the member API (docs/member-api.md, "Console").

    GET  /console                              the page (static HTML + JS, no authentication; /console/static)
    GET  /console/lineage                      every model with its votes' scores on G and L
    POST /models/{id}/predictions              image (+ optional truth mask) -> a kept prediction, 2-D or 3-D
    GET  /predictions/{pid}                    that prediction again
    GET  /predictions/{pid}/overlay.png?z=     its overlay PNG: the 2-D picture, or slice z of a volume

Every data route takes the operator token (or a peer's signed request) like the rest of the API; a prediction
belongs to its caller. The page starts training and fine-tuning jobs through /jobs and asks /active/rank for the
committee's ranking of the site's unlabelled images (services/member/app.py).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from services.common import error_responses, mount_shared_static, page
from services.member.auth import Authenticated
from services.member.history import HistoryCache, Snapshot
from services.member.predictions import Predicted, PredictionCache, find, picture, truth_of
from services.member.schemas import ModelDetail, ModelSummary
from services.member.uploads import ModelCache, check_committed, check_size, read_upload, upload_body, uploaded
from tclearn.coalition.backend import tensors
from tclearn.errors import DataError
from tclearn.site.open import Site

STATIC = Path(__file__).parent / "static"
ERRORS = error_responses(400, 401, 403, 404, 409, 413, 422)
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}, "description": "the overlay picture"}}
UPLOAD_BODY = upload_body(mask="optional truth mask, the same shape as the image")


class ScoredModel(ModelSummary):
    votes: int
    score_global: float | None = Field(description="mean of the votes' scores on the global test set G")
    score_local: float | None = Field(description="mean of the votes' scores on the validators' own sets L")
    reject_reason: str | None


class PredictionOut(BaseModel):
    id: str = Field(description="fetch its overlay from /predictions/{id}/overlay.png (kept while recent)")
    model_id: int
    image: str = Field(description="the uploaded file's name")
    shape: list[int] = Field(description="channels and spatial axes as read (x, y, z for a volume)")
    dims: int = Field(description="2 or 3")
    depth: int = Field(description="slices along z (1 for a 2-D image)")
    slices: list[int] = Field(description="the slices worth looking at first (the boxes' centres, then spread)")
    threshold: float
    min_area: int
    boxes: list[dict[str, Any]] = Field(description="rows and columns (2-D) or x, y, z (3-D); max exclusive")
    truth: list[dict[str, Any]] | None = Field(description="the truth mask's boxes, when one was uploaded")

    @classmethod
    def of(cls, p: Predicted) -> PredictionOut:
        return cls(
            id=p.id,
            model_id=p.model_id,
            image=p.name,
            shape=list(p.image.shape),
            dims=p.dims,
            depth=p.depth,
            slices=p.slices,
            threshold=p.threshold,
            min_area=p.min_area,
            boxes=[asdict(b) for b in p.boxes],
            truth=None if p.truth is None else [asdict(b) for b in p.truth],
        )


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def scored(model: ModelDetail) -> ScoredModel:
    """A model's summary with the mean of its votes' scores (None before any vote)."""
    return ScoredModel(
        **model.model_dump(include=set(ModelSummary.model_fields)),
        votes=len(model.votes),
        score_global=_mean([v.score_global for v in model.votes]),
        score_local=_mean([v.score_local for v in model.votes]),
        reject_reason=model.reject_reason,
    )


def install_console(app: FastAPI, site: Site, models: ModelCache, history: HistoryCache) -> PredictionCache:
    """Mounts the console's page, its static files and its routes on the member API `app`; returns the cache
    its predictions live in."""
    kept = PredictionCache()
    co = site.coalition
    router = APIRouter(tags=["console"])

    async def current() -> Snapshot:
        return history.snapshot() if history.fresh else await run_in_threadpool(history.snapshot)

    @router.get("/console", include_in_schema=False)
    async def console() -> FileResponse:
        return page(STATIC / "index.html")

    @router.get("/console/lineage", responses=ERRORS)
    async def lineage(_who: Authenticated) -> list[ScoredModel]:
        """Every model on chain, by id, with its state and the mean of its votes' scores."""
        return [scored(m) for m in (await current()).models.values()]

    @router.post("/models/{model_id}/predictions", status_code=201, responses=ERRORS, openapi_extra=UPLOAD_BODY)
    async def predict(
        model_id: int,
        request: Request,
        who: Authenticated,
        threshold: Annotated[float, Query(gt=0, lt=1)] = 0.5,
        min_area: Annotated[int, Query(ge=1, le=1 << 24)] = 1,
    ) -> PredictionOut:
        """What a committed model finds in one upload (form field `image`: PNG, JPEG, TIFF, NIfTI or DICOM, by its
        name; a volume for a 3-D model), with the boxes of an optional truth mask (field `mask`, same shape).
        Kept for the caller in a bounded memory cache so that its overlay and a volume's slices are drawn
        without running the model again; nothing is written to disk."""
        check_size(request)
        model = (await current()).model(model_id)
        check_committed(model_id, model.state)
        backend = tensors(co.backend, f"model {model_id}")
        form = await request.form(max_files=2, max_fields=10)
        image_file = await uploaded(form, "image")
        if image_file is None:
            raise DataError("send the image as the multipart/form-data file field 'image'")
        mask_file = await uploaded(form, "mask")
        image = await run_in_threadpool(read_upload, *image_file)
        truth = None
        if mask_file is not None:
            mask = await run_in_threadpool(read_upload, *mask_file)
            truth = truth_of(mask, image, mask_file[0])
        network = await run_in_threadpool(models.get, model_id, model.model_hash)
        boxes, truth_boxes = await run_in_threadpool(
            find, network, backend.config, image, truth, image_file[0], threshold, min_area, backend.training.device
        )
        predicted = Predicted(
            kept.new_id(), who.identity, model_id, image_file[0], image, boxes, truth_boxes, threshold, min_area
        )
        kept.put(predicted)
        return PredictionOut.of(predicted)

    @router.get("/predictions/{prediction_id}", responses=ERRORS)
    async def prediction(prediction_id: str, who: Authenticated) -> PredictionOut:
        return PredictionOut.of(kept.get(prediction_id, who.identity))

    @router.get("/predictions/{prediction_id}/overlay.png", response_class=Response, responses={**PNG, **ERRORS})
    async def overlay_png(
        prediction_id: str, who: Authenticated, z: Annotated[int | None, Query(ge=0)] = None
    ) -> Response:
        """The prediction drawn in red over the image, the truth in green beside it (2-D) or around it (slice `z`
        of a volume; default: the first slice worth looking at)."""
        found = kept.get(prediction_id, who.identity)
        return Response(await run_in_threadpool(picture, found, z), media_type="image/png")

    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    mount_shared_static(app)
    app.include_router(router)
    return kept
