"""`softmax download`: put the four official files into the data dir, verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from softmax_cli.cli.options import DataDirOption
from softmax_cli.cli.output import console, say
from softmax_cli.paths import resolve_data_dir


def download(
    data_dir: DataDirOption = None,
    mirror: Annotated[
        Optional[list[str]],
        typer.Option(
            "--mirror",
            metavar="URL",
            help="Base URL to fetch from (http://, https://, file://); repeatable; replaces the default mirrors.",
            show_default=False,
        ),
    ] = None,
    from_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--from",
            metavar="DIR",
            help="Import from a local folder holding the four .gz files (or the four uncompressed IDX files).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even if valid files are present.")] = False,
) -> None:
    """Put the four official Fashion-MNIST files into the data dir, verified by md5."""
    from softmax_cli import download as dl
    from softmax_cli.cli.render import DownloadProgressBar

    if mirror and from_dir is not None:
        raise typer.BadParameter("give either --mirror or --from, not both", param_hint="--from")
    target = resolve_data_dir(data_dir)
    with DownloadProgressBar(console) as progress:
        results = dl.fetch_dataset(target, mirrors=mirror, source_dir=from_dir, force=force, progress=progress)
    folder = escape(str(dl.raw_dir(target)))
    if all(r.status == "present" for r in results):
        say(f"All four files already present and valid in {folder}")
    else:
        say(f"[green]Fashion-MNIST ready[/] in {folder}")
