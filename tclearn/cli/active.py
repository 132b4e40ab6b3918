"""`tclearn active rank` and `tclearn active add`: which unlabelled images are worth an expert's time, by the
coalition's committee; and the annotated ones joining the training folder (docs/active.md)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tclearn.cli.common import console, user_errors
from tclearn.learning.choices import DEFAULT_DENSITY, DEFAULT_MEASURE, Measure, Method

app = typer.Typer(help="Active learning: rank unlabelled images for annotation; add the annotated ones.")

ConfigOpt = typer.Option(
    Path("member.toml"), "--config", "-c", help="The site's member.toml; TCLEARN_MEMBER_* variables override it."
)


@app.command("rank")
def rank_command(
    unlabelled: Path = typer.Option(..., "--unlabelled", help="The folder of images waiting for annotation."),
    budget: str = typer.Option(..., "--budget", help="How many to annotate: a count (25) or a share (10%)."),
    committee: int = typer.Option(3, "--committee", help="Committee size K: the last K hospitals' models (>= 2)."),
    method: Method = typer.Option(Method.COMMITTEE, "--method", help="committee, tta, dropout or random."),
    measure: Measure = typer.Option(DEFAULT_MEASURE, "--measure", help="entropy (votes) or dice (pairwise Dice)."),
    out: Path = typer.Option(Path("ranking"), "--out", "-o", help="A new folder: ranking.json and thumbnails/."),
    seed: int = typer.Option(0, "--seed", help="The random method's seed."),
    diversity: float = typer.Option(0.3, "--diversity", min=0.0, help="Weight against near-duplicates (0: none)."),
    density: float = typer.Option(
        DEFAULT_DENSITY, "--density", min=0.0, help="Exponent of the weight for typical images over outliers (0: none)."
    ),
    config: Path = ConfigOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the ranking as JSON."),
) -> None:
    """Rank the images of --unlabelled by the disagreement of the coalition's last models of different hospitals
    (read from the chain, verified from the vault), weighted by information density, with a diversity term; the
    first --budget are chosen."""
    from tclearn.site.active import RankRequest, rank_folder
    from tclearn.site.config import MemberSettings, load_site_config
    from tclearn.site.open import open_site

    request = RankRequest(budget, committee, method, measure, seed, diversity, density)
    with user_errors():
        from tclearn.learning.data import list_images
        from tclearn.learning.ranking import parse_budget

        parse_budget(budget, len(list_images(unlabelled)))  # bad input refused before the chain is reached
        site = open_site(load_site_config(config, MemberSettings))
        try:
            ranking = rank_folder(site, request, unlabelled, out)
        finally:
            site.close()
    if as_json:
        typer.echo(json.dumps(ranking, indent=2))
        return
    seated = ", ".join(f"{m['model_id']}" for m in ranking["committee"]) or "none"
    console.print(f"{len(ranking['ranked'])} images ranked by {ranking['method']} (models {seated}) -> {out}")
    for row in ranking["ranked"][: ranking["budget"]]:
        console.print(f"  {row['rank']:>4}  {row['score']:.4f}  {row['name']}")


@app.command("add")
def add_command(
    ranking: Path = typer.Argument(..., help="The ranking.json (or its folder) `tclearn active rank` wrote."),
    masks: Path = typer.Option(..., "--masks", help="The annotations: one mask per chosen image, by name."),
    data: Path = typer.Option(..., "--data", help="The training folder (images/ and masks/) they join."),
    as_json: bool = typer.Option(False, "--json", help="Print the names added as JSON."),
) -> None:
    """Copy each chosen image and its mask (every chosen image needs one in --masks) into --data; list their
    sha256 in --data/committee.json. All or nothing: on any error the training folder is left as it was."""
    from tclearn.learning.ranking import add

    with user_errors():
        added = add(ranking, masks, data)
    if as_json:
        typer.echo(json.dumps({"added": added, "data": str(data)}, indent=2))
        return
    console.print(f"{len(added)} annotated images added to {data}: {', '.join(added)}")
