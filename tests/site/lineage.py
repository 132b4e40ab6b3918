"""A committed lineage on the embedded chain for active-learning tests: a variant B coalition of three hospitals
whose models 1 (hospital 0), 2 and 3 (hospital 1) are committed, and a site of hospital 2 over it."""

from __future__ import annotations

from pathlib import Path

import torch

from tclearn.coalition.context import Coalition
from tclearn.coalition.rounds import run_round
from tclearn.learning.synth import synth_coalition
from tclearn.ledger.chain import embedded_chain
from tclearn.simulation.demo import DemoSettings, setup
from tclearn.site.config import MemberSettings
from tclearn.site.open import Site
from tclearn.types import Variant

MEMBERS = 3


def founded(folder: Path) -> Coalition:
    """The coalition with only model 1 committed (hospital 0's); its data under `folder/data`."""
    torch.set_num_threads(1)
    data = folder / "data"
    synth_coalition(data, hospitals=MEMBERS, train=8, test=4, global_size=8, size=32, seed=0)
    settings = DemoSettings(members=MEMBERS, byzantine=0, variant=Variant.B, data=data, epochs=1, baselines=False)
    co, _ = setup(settings, embedded_chain(MEMBERS + 3), folder / "coalition")
    assert run_round(co, co.hospitals[0]).state == "committed"
    return co


def grow(co: Coalition) -> Coalition:
    """Models 2 and 3 committed by hospital 1 on top of model 1."""
    for hospital in (1, 1):
        assert run_round(co, co.hospitals[hospital]).state == "committed"
    return co


def site_of(co: Coalition, folder: Path, unlabelled: Path | None = None) -> Site:
    """Hospital 2's site over `co` (no chain connection of its own), its rankings under `folder/rankings`."""
    config = MemberSettings(
        name="hospital-3",
        deployment=folder / "deployment.json",
        vault_url="http://vault.invalid",
        dev_account=3,
        data=folder / "data" / "hospital-3",
        global_test=folder / "data" / "global",
        unlabelled=unlabelled,
        rankings=folder / "rankings",
    )
    return Site(config, co, co.hospitals[2])
