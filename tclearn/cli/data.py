"""`tclearn data ...`: make a synthetic coalition, split a real table into one, fingerprint or compress a folder."""

from __future__ import annotations

import enum
import json
from pathlib import Path

import typer
from rich.console import Console

from tclearn.cli.common import user_errors

app = typer.Typer(help="Coalition data: synthetic hospitals and data-set fingerprints.", no_args_is_help=True)
console = Console()


class SynthTask(enum.StrEnum):
    SEGMENTATION = "segmentation"
    MULTILABEL = "multilabel"


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the coalition into."),
    hospitals: int = typer.Option(3, "--hospitals", min=1, help="Number of hospitals."),
    train: int = typer.Option(32, help="Training images per hospital."),
    test: int = typer.Option(8, help="Local test images (L) per hospital."),
    global_size: int = typer.Option(48, "--global", help="Images in the global test set G."),
    size: int | None = typer.Option(
        None,
        help="Image side in pixels (voxels in 3-D); default 64 in 2-D, 48 in 3-D (multilabel 3-D: 32).",
        show_default=False,
    ),
    dims: int = typer.Option(2, "--dims", help="2: PNG images; 3: NIfTI volumes (int16 HU)."),
    seed: int = typer.Option(0, help="Random seed; the same seed writes the same files."),
    tabular: bool = typer.Option(False, "--tabular", help="Feature tables (CSV) for variant C instead of images."),
    features: int = typer.Option(30, "--features", help="With --tabular: measurements per patient."),
    task: SynthTask = typer.Option(
        SynthTask.SEGMENTATION,
        "--task",
        help="segmentation (findings, masks) or multilabel (CT heads, ten regions).",
    ),
) -> None:
    """Write DIR/<hospital>/{train,test}/{images,masks}, each hospital with its own case mix and scanner, DIR/global
    and DIR/coalition.json (--tabular: DIR/<hospital>/{train,test}.csv and DIR/global.csv; --task multilabel:
    DIR/<hospital>/{train,test}/{images/,labels.csv})."""
    from tclearn.errors import ConfigError
    from tclearn.learning.multilabel_synth import synth_multilabel
    from tclearn.learning.synth import DEFAULT_SIZE, synth_coalition
    from tclearn.learning.tabular import synth_tabular

    with user_errors():
        if tabular and task is SynthTask.MULTILABEL:
            raise ConfigError("--tabular and --task multilabel exclude each other")
        if tabular:
            description = synth_tabular(out, hospitals, train, test, global_size, features, seed)
        elif task is SynthTask.MULTILABEL:
            description = synth_multilabel(out, hospitals, train, test, global_size, size, dims, seed)
        else:
            side = DEFAULT_SIZE.get(dims, 0) if size is None else size
            description = synth_coalition(out, hospitals, train, test, global_size, side, seed, dims)
    kind = "rows" if tabular else ("volumes" if dims == 3 else "images")
    console.print(f"wrote {hospitals} hospitals and a global test set of {global_size} {kind} to {out}")
    console.print_json(json.dumps(description["hospitals"]))


@app.command()
def split(
    table: Path = typer.Argument(..., help="One CSV table: a 0/1 label column and raw numeric measurements."),
    by: str = typer.Option(..., "--by", help="The column whose range the sites share out (their case mix)."),
    out: Path = typer.Option(..., "--out", help="Folder to write the coalition into."),
    hospitals: int = typer.Option(3, "--hospitals", min=2, help="Number of sites."),
    prevalence: float | None = typer.Option(None, "--prevalence", help="Drop positives until they are this share."),
    label_column: str = typer.Option("label", "--label-column", help="The 0/1 label column."),
    seed: int = typer.Option(0, help="Random seed; the same seed writes the same files."),
) -> None:
    """Write one real table as a variant C coalition (DIR/<hospital>/{train,test}.csv, DIR/global.csv): G a random
    quarter, the sites each their own part of the --by column's range, to try `tclearn demo --variant C --data DIR`."""
    from tclearn.learning.tables import read_table
    from tclearn.learning.tabular import split_table

    with user_errors():
        rows = read_table(table, label_column)
        description = split_table(
            out, rows.x, rows.y, rows.columns, by=by, hospitals=hospitals, prevalence=prevalence, seed=seed
        )
    console.print(f"wrote {hospitals} sites and a global test set of {description['global']} rows to {out}")
    console.print_json(json.dumps(description["hospitals"]))


@app.command()
def fingerprint(path: Path = typer.Argument(..., help="Data folder or file.")) -> None:
    """Print the manifest summary (sha256 digest, files, bytes) recorded in model metadata."""
    from tclearn.learning.manifest import fingerprint as make

    with user_errors():
        manifest = make(path)
    console.print_json(json.dumps(manifest.summary()))


@app.command()
def compress(
    source: Path = typer.Argument(..., help="Data folder: segmentation, class folders or a whole coalition."),
    out: Path = typer.Option(..., "--out", help="New folder to write the coded copy into (must not exist)."),
    ratio: float = typer.Option(1.0, "--ratio", help="JPEG 2000 ratio, raw over coded bytes: 1 lossless, R > 1 lossy."),
) -> None:
    """Copy a data folder with every image coded in JPEG 2000 (pictures to .jp2, DICOM to a J2K transfer syntax,
    3-D NIfTI to DICOM series); masks and label files copied unchanged. Prints what was written as JSON."""
    from tclearn.learning.compress import compress as run

    with user_errors():
        report = run(source, out, ratio)
    console.print_json(json.dumps(report))
