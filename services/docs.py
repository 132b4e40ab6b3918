"""`GET /docs` without the internet: Swagger UI's script, stylesheet and icon come from this service.

FastAPI's own `/docs` page loads Swagger UI from a CDN, which a hospital's network often cannot reach. The
assets here are the ones the `fastapi-offline` package ships (Swagger UI 5, which renders OpenAPI 3.1), mounted
at `/docs/assets/`; nothing is copied into this repository. Apps are built with `docs_url=None` and
`redoc_url=None` (ReDoc, too, would load from a CDN) and get the page from `install_docs`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS = "/docs"
ASSETS = "/docs/assets"
SWAGGER_ASSETS = Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI) -> None:
    """`GET /docs` (Swagger UI over the app's OpenAPI document) with its assets under `/docs/assets/`."""
    app.mount(ASSETS, StaticFiles(directory=SWAGGER_ASSETS), name="docs-assets")

    @app.get(DOCS, include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
