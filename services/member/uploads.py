"""What every prediction route of the member API shares: the upload limits, an uploaded image read by tclearn's
readers, and the last few decoded models."""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from torch import nn

from tclearn.coalition.backend import tensors
from tclearn.errors import ConflictError, DataError, TooLargeError
from tclearn.learning.data import IMAGE_SUFFIXES, read_image
from tclearn.site.open import Site
from tclearn.types import ModelState

MAX_UPLOAD_BYTES = 32 << 20
MAX_PIXELS = 4096 * 4096
MODEL_CACHE = 4  # decoded models kept for prediction


class ModelCache:
    """The last few decoded models, by id (a committed model never changes)."""

    def __init__(self, site: Site, size: int = MODEL_CACHE) -> None:
        self.site, self.size = site, size
        self._models: OrderedDict[int, nn.Module] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: int, model_hash: str) -> nn.Module:
        with self._lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
        backend = tensors(self.site.coalition.backend, f"model {model_id}")
        model = backend.network(backend.open(self.site.hospital, model_hash))
        model.eval()
        with self._lock:
            self._models[model_id] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model


def upload_body(**optional: str) -> dict[str, Any]:
    """The OpenAPI request body of a prediction route: the file field `image`, and each of `optional` (a field's
    name and description)."""
    fields = {name: {"type": "string", "format": "binary", "description": text} for name, text in optional.items()}
    schema = {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}, **fields}}
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": {**schema, "required": ["image"]}}},
        }
    }


def check_committed(model_id: int, state: str) -> None:
    """Predictions use committed models only: 409 naming the model's state otherwise."""
    if state != ModelState.COMMITTED.name.lower():
        raise ConflictError(f"model {model_id} is {state}; predictions use committed models only")


def _upload_suffix(filename: str) -> str:
    name = filename.lower()
    suffix = next((s for s in sorted(IMAGE_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)
    if suffix is None:
        raise DataError(f"unsupported image type {filename!r}; expected one of {', '.join(IMAGE_SUFFIXES)}")
    return suffix


def read_upload(filename: str, data: bytes) -> np.ndarray:
    """An uploaded image read by tclearn's readers (by its suffix); `DataError` naming the upload otherwise."""
    if not data:
        raise DataError(f"uploaded image {filename!r} is empty")
    with tempfile.TemporaryDirectory(prefix="tclearn-upload-") as folder:
        path = Path(folder) / f"upload{_upload_suffix(filename)}"
        path.write_bytes(data)
        try:
            image = read_image(path)
        except DataError as exc:
            raise DataError(exc.message.replace(str(path), filename), upload=filename) from None
    if int(np.prod(image.shape[1:])) > MAX_PIXELS:
        raise DataError(f"uploaded image {filename!r} has shape {image.shape}; the limit is {MAX_PIXELS} pixels")
    return image


def check_size(request: Request) -> None:
    """413 before the body is read when the declared upload exceeds `MAX_UPLOAD_BYTES`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise TooLargeError(f"upload of {declared} bytes exceeds {MAX_UPLOAD_BYTES} bytes", limit=MAX_UPLOAD_BYTES)


async def uploaded(form: FormData, field: str) -> tuple[str, bytes] | None:
    """The name and bytes of the file in form field `field`; None when the field is absent."""
    upload = form.get(field)
    if upload is None:
        return None
    if not isinstance(upload, UploadFile):
        raise DataError(f"send the {field} as a multipart/form-data file field {field!r}, not as text")
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise TooLargeError(f"the {field} upload exceeds {MAX_UPLOAD_BYTES} bytes", limit=MAX_UPLOAD_BYTES)
    return upload.filename or field, data
