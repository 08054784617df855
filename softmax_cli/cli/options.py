"""What every command shares: option types and their checks, devices, data set-up, pictures.

The consoles and the user-error path are in softmax_cli.cli.output.

Option ranges and defaults come from softmax_cli.config (RANGES, Hparams), so the help
text, the validation here and checkpoint validation cannot drift apart. torch is never
imported at module level, so `--help` answers instantly.
"""

from __future__ import annotations

import difflib
import os
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from softmax_cli.cli.output import console, fail, say
from softmax_cli.config import (
    IMPLS,
    LOADERS,
    PRESETS,
    RANGES,
    SCHEDULES,
    Hparams,
    Range,
    out_of_range,
    parse_number,
)
from softmax_cli.data.paths import DATA_DIR_ENV, expand_user
from softmax_cli.errors import DataError, UsageError


def within(allowed: Range):
    """A Typer callback that refuses a value outside `allowed` as a usage error.

    Ranges are checked here rather than by Typer's min=/max=, which would print them in the
    help as "[1<=x<=9223372036854775807]"; the help says a range in words where it matters.
    """

    def check(value):
        if value is not None and value not in allowed:
            raise typer.BadParameter(out_of_range(allowed, value))
        return value

    return check


def number_value(value) -> float:
    """The parser of number options: config.parse_number, the reading sweep's lists share."""
    try:
        return parse_number(str(value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def whole_number_value(value) -> int:
    """The parser of whole-number options: config.parse_number, the reading sweep's lists share."""
    try:
        return parse_number(str(value), whole=True)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def checked(name: str):
    """A Typer callback that refuses a value outside config.RANGES[name] as a usage error."""
    return within(RANGES[name])


def default_note(name: str, extra: str = "") -> str:
    """' [default: X]' from Hparams' own default, for options whose None means 'not given'."""
    return f" [default: {getattr(Hparams, name)}{extra}]"


class _Choice(str, Enum):
    """A choice option's value. str() is the bare name: Typer < 0.25 converts a parser's result
    by its str(), and would find no "Choice.tuned" among the names."""

    def __str__(self) -> str:
        return self.value


def _choices(names) -> type[Enum]:
    return _Choice("Choice", {name: name for name in names})


Impl, Loader, Schedule, Preset = (_choices(names) for names in (IMPLS, LOADERS, SCHEDULES, PRESETS))


def _parse_choice(choices: type[Enum]):
    """A Typer parser for an Enum option that refuses a typo in plain words, with a suggestion.

    Typer >= 0.25 validates Enum options through pydantic, whose message reads "Value error,
    'scrach' is not one of ..."; a parser runs instead of that validation, and a BadParameter
    it raises passes through pydantic untouched.
    """
    names = [choice.value for choice in choices]

    def parse(value):
        if isinstance(value, choices):
            return value
        if value in names:
            return choices(value)
        close = difflib.get_close_matches(str(value), names, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(names)}{hint}")

    return parse


def _choice_metavar(choices: type[Enum]) -> str:
    return "[" + "|".join(choice.value for choice in choices) + "]"


_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _check_device(value: str) -> str:
    if not _DEVICE_PATTERN.fullmatch(value):
        raise typer.BadParameter(f"{value!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return value


def resolve_device_or_usage_error(name: str):
    """Resolve --device; a device this machine lacks is a usage error (exit 2)."""
    from softmax_cli.devices import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from None


def given_options(**options) -> dict:
    """The training options as Hparams field values (enums to their names; None = not given)."""
    return {name: value.value if isinstance(value, Enum) else value for name, value in options.items()}


def ensure_data(data_dir: Path) -> None:
    """The dataset ready (softmax_cli.data.ready): fetched when missing, with a note and a progress bar
    on stderr, then verified before any work."""
    from softmax_cli.cli.render import DownloadProgressBar
    from softmax_cli.data.ready import ready_dataset

    ready_dataset(data_dir, note=lambda message: say(escape(message)), progress=lambda: DownloadProgressBar(console))


# The picture formats --weights-png and predict's --out write, by file name suffix.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def check_image_path(path: Optional[Path]) -> Optional[Path]:
    """A Typer callback: the picture's format follows its name, so a name we cannot write is a usage error."""
    if path is not None and path.suffix.lower() not in IMAGE_SUFFIXES:
        raise typer.BadParameter(f"{path}: name a {', '.join(IMAGE_SUFFIXES)} file (the format follows the name)")
    return path


def expanded_path(option: str):
    """A Typer callback: the path with `~` / `~user` expanded; an unknown user is a usage error (exit 2)."""

    def expand(value: Optional[Path]) -> Optional[Path]:
        if value is None:
            return None
        try:
            return expand_user(value, option)
        except DataError as exc:
            raise typer.BadParameter(str(exc)) from None

    return expand


def check_picture_target(path: Optional[Path], overwrite: bool, option: str) -> None:
    """The one rule for every picture a command writes, checked before any work: an existing file
    is replaced only when softmax-cli wrote it (figures.is_our_picture) or with --overwrite;
    otherwise a usage error (exit 2) naming the file and --overwrite. A folder is never replaced."""
    if path is None or not os.path.lexists(path):
        return
    if path.is_dir():
        raise UsageError(f"{path} is a folder; name a picture file", option)
    from softmax_cli.pictures.figures import is_our_picture

    if not overwrite and not is_our_picture(path):
        raise UsageError(
            f"{path} exists and was not written by softmax-cli; pass --overwrite to replace it, or name another file",
            option,
        )


def write_image(save, path: Path) -> None:
    """Write a picture with save(path), creating its folder; an unwritable path is one error line.

    save(path) picks the format from the name's suffix (checked by check_image_path), so a
    .jpg file holds a JPEG, never PNG bytes. check_picture_target has said, before any work,
    whether an existing file may be replaced.
    """
    existed = os.path.lexists(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save(path)
    except (OSError, ValueError) as exc:
        raise fail(f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}") from None
    say(f"{'Replaced' if existed else 'Wrote'} {escape(str(path))}")


DataDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        metavar="DIR",
        callback=expanded_path("--data-dir"),
        help=f"Dataset folder. [default: ${DATA_DIR_ENV}, else $XDG_DATA_HOME/softmax-cli, "
        "else ~/.local/share/softmax-cli]",
        show_default=False,
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        metavar="DEVICE",
        callback=_check_device,
        help="auto (cuda if available, then mps, then cpu), cpu, cuda, cuda:N or mps.",
    ),
]
OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace an existing picture that softmax-cli did not write (its own are replaced without asking).",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout instead; the human output goes to stderr.")
]


def path_value(value) -> Path:
    """The parser of path options: an empty value would silently become "." (the current folder)."""
    if not str(value).strip():
        raise typer.BadParameter("must be a path, not empty")
    return Path(value)


def folder_value(value) -> Path:
    """The parser of folder options that softmax writes into: not empty, and not an existing file."""
    path = path_value(value)
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} exists and is not a folder")
    return path


CheckpointArgument = Annotated[
    Optional[Path],
    typer.Argument(
        parser=path_value,
        metavar="CHECKPOINT",
        help="A checkpoint written by `softmax train`, or a run folder. [default: the newest run's, under --runs-dir]",
        show_default=False,
    ),
]

# Training options, shared by `train` and `compare`. None means "not given", so that a preset
# or a resumed checkpoint supplies the value and an explicit option can be told apart.
ImplOption = Annotated[
    Optional[Impl],
    typer.Option(
        parser=_parse_choice(Impl),
        metavar=_choice_metavar(Impl),
        help="Implementation: scratch (the book's 3.6) or concise (3.7)." + default_note("impl"),
        show_default=False,
    ),
]
EpochsOption = Annotated[
    Optional[int],
    typer.Option(
        parser=whole_number_value,
        callback=checked("epochs"),
        metavar="N",
        show_default=False,
        help="Epochs in total (a resumed run counts the checkpoint's)." + default_note("epochs"),
    ),
]
LrOption = Annotated[
    Optional[float],
    typer.Option(
        parser=number_value,
        callback=checked("lr"),
        metavar="X",
        help="Learning rate." + default_note("lr", "; tuned preset 0.05"),
        show_default=False,
    ),
]
BatchSizeOption = Annotated[
    Optional[int],
    typer.Option(
        parser=whole_number_value,
        callback=checked("batch_size"),
        metavar="N",
        help="Minibatch size." + default_note("batch_size"),
        show_default=False,
    ),
]
WorkersOption = Annotated[
    Optional[int],
    typer.Option(
        parser=whole_number_value,
        callback=checked("workers"),
        metavar="N",
        show_default=False,
        help="DataLoader worker processes, 0 to 64 (--loader dataloader only). [default: min(4, CPUs)]",
    ),
]
LoaderOption = Annotated[
    Optional[Loader],
    typer.Option(
        parser=_parse_choice(Loader),
        metavar=_choice_metavar(Loader),
        show_default=False,
        help="memory: the split held on the device, indexed batches (fast). "
        "dataloader: the book's ToTensor + DataLoader pipeline." + default_note("loader"),
    ),
]
SeedOption = Annotated[
    Optional[int],
    typer.Option(
        parser=whole_number_value,
        callback=checked("seed"),
        metavar="N",
        show_default=False,
        help="Seed, set before the weights are drawn." + default_note("seed"),
    ),
]
RunsDirOption = Annotated[
    Path,
    typer.Option(parser=folder_value, metavar="DIR", help="Folder of the runs: RUNS_DIR/<impl>/<timestamp>-<tag>/."),
]


def run_name(value: Optional[str]) -> Optional[str]:
    """The callback of --name: a name fit to be one folder (folders.name_problem), else a usage error."""
    from softmax_cli.runs.folders import name_problem

    if value is None:
        return None
    problem = name_problem(value)
    if problem:
        raise typer.BadParameter(f"{problem}: {value!r}")
    return value


NameOption = Annotated[
    Optional[str],
    typer.Option(
        callback=run_name,
        metavar="NAME",
        show_default=False,
        help="Name the run: its folder is RUNS_DIR/<impl>/NAME/ (it must not exist yet) instead of "
        "<timestamp>-<tag>; `softmax runs`, `softmax plot` and TensorBoard show it.",
    ),
]
NaiveSoftmaxOption = Annotated[
    Optional[bool],
    typer.Option(
        "--naive-softmax",
        show_default=False,
        help="scratch only: the book's exact exp/sum softmax and -log cross-entropy, which overflow for large logits.",
    ),
]
PresetOption = Annotated[
    Optional[Preset],
    typer.Option(
        parser=_parse_choice(Preset),
        metavar=_choice_metavar(Preset),
        show_default=False,
        help="book: the book's settings. tuned: momentum 0.9, weight decay 1e-4, cosine "
        "from lr 0.05, standardised pixels. Explicit options override." + default_note("preset"),
    ),
]
MomentumOption = Annotated[
    Optional[float],
    typer.Option(
        parser=number_value,
        callback=checked("momentum"),
        metavar="X",
        help="SGD momentum, in [0, 1)." + default_note("momentum"),
        show_default=False,
    ),
]
WeightDecayOption = Annotated[
    Optional[float],
    typer.Option(
        parser=number_value,
        callback=checked("weight_decay"),
        metavar="X",
        help="L2 weight decay." + default_note("weight_decay"),
        show_default=False,
    ),
]
ScheduleOption = Annotated[
    Optional[Schedule],
    typer.Option(
        parser=_parse_choice(Schedule),
        metavar=_choice_metavar(Schedule),
        show_default=False,
        help="Learning rate: constant, or cosine-annealed to 0 over all steps." + default_note("schedule"),
    ),
]
StandardizeOption = Annotated[
    Optional[bool],
    typer.Option(
        "--standardize/--no-standardize",
        show_default=False,
        help="Standardise each pixel by the train split's mean/std (kept in the checkpoint). [default: off]",
    ),
]
ValSplitOption = Annotated[
    Optional[float],
    typer.Option(
        parser=number_value,
        callback=checked("val_split"),
        metavar="X",
        show_default=False,
        help="Hold out this fraction of the train split, in [0, 1), and report validation accuracy."
        + default_note("val_split"),
    ),
]
