"""Active learning at a site: a folder of unlabelled images ranked by the coalition's committee (or the head's own
uncertainty, or at random), read through the site's intensity, for `tclearn active rank` and the member API.

The member API ranks only inside the site's `unlabelled` folder (a request naming another folder is refused) and
writes each ranking under `rankings/<id>/`; the CLI ranks any folder into the folder its operator names.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tclearn.coalition.backend import tensors
from tclearn.coalition.committee import committee, head_model
from tclearn.errors import AccessDenied, ConfigError, NotFoundError
from tclearn.learning.choices import DEFAULT_DENSITY, DEFAULT_MEASURE, Measure, Method
from tclearn.learning.data import list_images
from tclearn.learning.ranking import DEFAULT_DIVERSITY, THUMBNAILS, CommitteeModel, parse_budget, rank
from tclearn.learning.volumes import Intensity
from tclearn.site.open import Site

DEFAULT_COMMITTEE = 3
RANKING_ID = re.compile(r"^[0-9a-f]{16}$")
THUMBNAIL_FILE = re.compile(r"^[0-9]+-[^/\\]+\.png$")


@dataclass(frozen=True)
class RankRequest:
    """What an operator asks for: how many images, which method and measure, the committee's size, the weights."""

    budget: str  # a count ("25") or a share of the folder ("10%")
    committee: int = DEFAULT_COMMITTEE
    method: Method = Method.COMMITTEE
    measure: Measure = DEFAULT_MEASURE
    seed: int = 0
    diversity: float = DEFAULT_DIVERSITY
    density: float = DEFAULT_DENSITY  # information density's exponent (0: off)


def models_for(site: Site, method: Method, k: int) -> list[CommitteeModel]:
    """The models `method` needs: the committee of `k`, the head alone (tta, dropout), or none (random)."""
    if method is Method.COMMITTEE:
        return committee(site.coalition, site.hospital, k)
    if method is Method.RANDOM:
        return []
    return [head_model(site.coalition, site.hospital)]


def rank_folder(site: Site, request: RankRequest, unlabelled: Path, out: Path) -> dict[str, Any]:
    """Rank `unlabelled` into `out` as `request` says, with the coalition's models and the site's intensity."""
    budget = parse_budget(request.budget, len(list_images(unlabelled)))
    if out.exists():  # before the models are read from the vault
        raise ConfigError(f"the ranking folder {str(out)!r} exists; name another --out or remove it")
    models = models_for(site, request.method, request.committee)
    return rank(
        models,
        unlabelled,
        budget,
        out,
        request.method,
        request.measure,
        Intensity(**site.config.intensity.model_dump()),
        request.seed,
        request.diversity,
        tensors(site.coalition.backend, "ranking images").config.task,
        density=request.density,
    )


def inside(folder: Path, allowed: Path) -> bool:
    return folder.resolve() == allowed.resolve() or allowed.resolve() in folder.resolve().parents


def rank_for_api(site: Site, request: RankRequest, unlabelled: str | None = None) -> tuple[str, dict[str, Any]]:
    """The member API's ranking: inside the site's `unlabelled` folder only, written to `rankings/<id>/`."""
    allowed = site.config.unlabelled
    if allowed is None:
        raise ConfigError(f"site {site.config.name!r} names no unlabelled folder; set unlabelled in its member.toml")
    folder = allowed if unlabelled is None else (allowed / unlabelled)
    if not inside(folder, allowed):
        raise AccessDenied(f"the folder {unlabelled!r} is outside this site's unlabelled folder {str(allowed)!r}")
    ranking_id = secrets.token_hex(8)
    return ranking_id, rank_folder(site, request, folder, site.config.rankings / ranking_id)


def thumbnail_path(site: Site, ranking_id: str, name: str) -> Path:
    """A thumbnail of ranking `ranking_id` written by the member API; `NotFoundError` for anything else."""
    if not RANKING_ID.match(ranking_id) or not THUMBNAIL_FILE.match(name):
        raise NotFoundError(f"no thumbnail {name!r} of ranking {ranking_id!r}")
    path = site.config.rankings / ranking_id / THUMBNAILS / name
    if not path.is_file():
        raise NotFoundError(f"no thumbnail {name!r} of ranking {ranking_id!r}")
    return path
