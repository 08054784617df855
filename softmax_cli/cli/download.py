"""`softmax download`: put the four official files into the data dir, verified.

A no-op run (every file present and verified) imports neither torch nor the network
code: it stats the files against what was recorded when they were verified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from softmax_cli.cli.options import DataDirOption, expanded_path
from softmax_cli.cli.output import console, fail, say
from softmax_cli.data.paths import resolve_data_dir


def _check_mirrors(values: Optional[list[str]]) -> Optional[list[str]]:
    """Refuse a mirror that can never work (ftp://, a bare path, an empty URL) as a usage error, before any work."""
    from softmax_cli.data.download import mirror_problem

    for value in values or []:
        problem = mirror_problem(value)
        if problem is not None:
            raise typer.BadParameter(problem)
    return values


def download(
    data_dir: DataDirOption = None,
    mirror: Annotated[
        Optional[list[str]],
        typer.Option(
            "--mirror",
            metavar="URL",
            callback=_check_mirrors,
            help="Base URL to fetch from (http://, https://, file://); repeatable; replaces the default mirrors.",
            show_default=False,
        ),
    ] = None,
    from_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--from",
            metavar="DIR",
            callback=expanded_path("--from"),
            help="Import from a local folder holding the four .gz files (or the four uncompressed IDX files).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even if valid files are present.")] = False,
) -> None:
    """Put the four official Fashion-MNIST files into the data dir, verified by md5; repair what is wrong."""
    from softmax_cli.cli.render import DownloadProgressBar
    from softmax_cli.data import download as dl

    if mirror and from_dir is not None:
        raise typer.BadParameter("give either --mirror or --from, not both", param_hint="--from")
    target = resolve_data_dir(data_dir)
    try:
        with DownloadProgressBar(console) as progress:
            results = dl.fetch_dataset(target, mirrors=mirror, source_dir=from_dir, force=force, progress=progress)
    except KeyboardInterrupt:
        # Every file is written under a temporary name and renamed only once verified: nothing partial stays.
        raise fail(
            "interrupted; the files already in place are verified, run the command again for the rest", 130
        ) from None
    folder = escape(str(dl.raw_dir(target)))
    for repair in dl.describe_repairs(results):
        say(f"[green]Repaired[/]: {escape(repair)}")
    if all(r.status == dl.STATUS_PRESENT for r in results):
        say(f"All four files already present and valid in {folder}")
    else:
        say(f"[green]Fashion-MNIST ready[/] in {folder}")
