"""Training: one epoch, the loop over epochs with callbacks, schedules, and the scratch-vs-concise comparison.

Reads top-down: fit() prepares the data and the model, then for each epoch calls
train_epoch(), whose model.train_step() ends in the book's `param -= lr * grad`.
It reports through TrainingCallbacks and never prints or knows the command line.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import torch

from softmax_cli import stops
from softmax_cli.config import Hparams, RunPaths
from softmax_cli.data.batches import class_names, prepare_data, read_split, validation_indices
from softmax_cli.errors import CheckpointError, DataError, SoftmaxError, TrainingDiverged, UsageError
from softmax_cli.evaluation import Evaluation, evaluate
from softmax_cli.models import SoftmaxRegression, make_model, model_from_checkpoint
from softmax_cli.runs import checkpoint as ckpt


def shuffle_generator_for(hparams: Hparams, device: torch.device) -> torch.Generator:
    # The memory loader permutes on the device itself; the DataLoader's sampler runs on the CPU.
    where = device if hparams.loader == "memory" else torch.device("cpu")
    return torch.Generator(device=where).manual_seed(hparams.seed)


def check_validation_split(hparams: Hparams, data_dir: Path) -> None:
    """--val-split must leave examples on both sides: a usage error found before the run starts.

    Its bounds depend on the size of the train split, so it can only be judged with the data.
    """
    if not hparams.val_split:
        return
    train_examples = len(read_split(data_dir, "train"))
    try:
        validation_indices(train_examples, hparams.val_split, hparams.seed)
    except DataError as exc:
        raise UsageError(f"{exc} (of {train_examples:,} train images)", "--val-split") from None


def fit(
    hparams: Hparams,
    paths: RunPaths,
    device: torch.device,
    callbacks: TrainingCallbacks | None = None,
    workers: int = 0,
    resume_from: dict | None = None,
) -> TrainingResult:
    """Train for hparams.epochs epochs (in total, counting a resumed checkpoint's), evaluating
    on the test split and saving a checkpoint after every epoch.

    Ctrl-C ends the run cleanly with the last completed epoch's checkpoint in place
    (result.interrupted). A NaN or infinite loss raises TrainingDiverged naming the epoch.
    """
    callbacks = callbacks or TrainingCallbacks()
    torch.manual_seed(hparams.seed)  # before any parameter exists: the seed article set it after
    shuffle_generator = shuffle_generator_for(hparams, device)
    data = prepare_data(hparams, paths.data_dir, device, workers, shuffle_generator, resume_from is not None)
    names = class_names()
    if resume_from is None:
        model = make_model(hparams, device, input_stats=data.input_stats)
        history: list[dict] = []
        start_epoch = 0
    else:
        model = model_from_checkpoint(resume_from, device)
        history = list(resume_from["history"])
        start_epoch = resume_from["epoch"]
        _restore_batch_order(shuffle_generator, resume_from["rng_state"]["shuffle"])

    model.prepare_to_train()  # a one-time cost (concise: building torch.optim.SGD), before any epoch's clock
    result = TrainingResult(
        hparams, device, history, checkpoint=None, log_dir=paths.log_dir, epochs_done=start_epoch, class_names=names
    )
    validation_examples = data.validation.num_examples if data.validation is not None else 0
    callbacks.on_train_start(
        TrainingPlan(
            hparams, device, start_epoch, len(data.train), data.train.num_examples, paths, list(history),
            validation_examples,
        )
    )  # fmt: skip
    try:
        for epoch_index in range(start_epoch, hparams.epochs):
            learning_rates = hparams.learning_rates(epoch_index, len(data.train))
            started = time.perf_counter()
            loss_sum, correct = train_epoch(model, data.train, learning_rates, callbacks.on_batch_end)
            train_loss = loss_sum.item() / data.train.num_examples
            train_acc = correct.item() / data.train.num_examples
            train_seconds = time.perf_counter() - started
            epoch = epoch_index + 1
            # The epoch's loss is measured before each step, so the last step can still have
            # overflowed the weights: check them too before they become "the last good checkpoint".
            if not (math.isfinite(train_loss) and all(bool(torch.isfinite(t).all()) for t in model.weight_bias())):
                result.diverged = True
                raise TrainingDiverged(_divergence_message(epoch, train_loss, hparams, result.checkpoint))
            evaluation = evaluate(model, data.test)
            val_acc = evaluate(model, data.validation).accuracy if data.validation is not None else None
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=train_loss,
                train_acc=train_acc,
                test_acc=evaluation.accuracy,
                test_loss=evaluation.loss,
                seconds=time.perf_counter() - started,
                examples_per_s=data.train.num_examples / train_seconds,
                lr=learning_rates[-1],
                val_acc=val_acc,
            )
            entry = metrics.as_dict()
            # An epoch ends as a whole (a stop signal waits for it, see softmax_cli.stops): saved,
            # recorded, shown and logged, so the report and the logs match the file on disk.
            with stops.uninterrupted():
                save_training_checkpoint(
                    model, hparams, epoch, [*history, entry], shuffle_generator, names, paths.checkpoint
                )
                # Recorded only once the file holds it: should Ctrl-C still land in the save (the
                # previous checkpoint stays, atomic.py), the unsaved epoch is never reported.
                history.append(entry)
                result.checkpoint, result.epochs_done = paths.checkpoint, epoch
                result.final_evaluation = evaluation
                callbacks.on_epoch_end(metrics, model)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        try:
            callbacks.on_train_end(result, model)
        except KeyboardInterrupt:
            # A stop while closing the logs: what is saved stays saved, and the result says so.
            result.interrupted = result.interrupted or result.epochs_done < hparams.epochs
    return result


def _restore_batch_order(generator: torch.Generator, state: torch.Tensor) -> None:
    """Continue the checkpoint's batch order; say whether a refusal is a device mismatch or damage.

    A CPU generator's state (Mersenne Twister, 5,056 bytes) and a GPU's (Philox, 16 bytes)
    differ in size, so the size tells where a state was drawn; a state of this run's own
    size (or of no known size) that torch still refuses is damaged, not from elsewhere.
    """
    try:
        generator.set_state(state)
        return
    except RuntimeError:
        pass
    cpu_size = torch.Generator().get_state().numel()
    drawn_on = {cpu_size: "cpu", 16: "gpu"}.get(state.numel())
    this_run = "cpu" if generator.device.type == "cpu" else "gpu"
    if drawn_on is None or drawn_on == this_run:
        raise CheckpointError(
            "the checkpoint's batch-order state (rng_state) is damaged: torch refuses it, so this run cannot "
            "continue the same batch order; resume from another checkpoint or start a new run"
        )
    described = {"cpu": "cpu", "gpu": "a GPU (cuda or mps)"}[drawn_on]
    raise SoftmaxError(
        f"the checkpoint's batch order was drawn on {described}, but this run draws it on {generator.device.type}; "
        "resume on the device it was trained on (--device) to continue the same batch order"
    )


def _divergence_message(epoch: int, loss: float, hparams: Hparams, last_checkpoint: Path | None) -> str:
    kept = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
    cause = (
        "the book's naive softmax overflowed (exp of a large logit is inf); drop --naive-softmax "
        "to use the stable LogSumExp form, or lower --lr"
        if hparams.naive_softmax
        else f"try a smaller --lr than {hparams.lr:g}"
        + (f" or a smaller --momentum than {hparams.momentum:g}" if hparams.momentum else "")
        + (f" or a smaller --weight-decay than {hparams.weight_decay:g}" if hparams.weight_decay else "")
    )
    what = f"training loss became {loss}" if not math.isfinite(loss) else "the weights became NaN or infinite"
    return f"{what} in epoch {epoch}: {cause}; {kept}"


def save_training_checkpoint(
    model: SoftmaxRegression,
    hparams: Hparams,
    epoch: int,
    history: list[dict],
    shuffle_generator: torch.Generator,
    names: list[str],
    path: Path,
) -> None:
    """Save everything needed to evaluate the model or resume training bit for bit."""
    weight, bias = model.weight_bias()
    stats = model.input_stats
    ckpt.save_checkpoint(
        ckpt.build_checkpoint(
            impl=model.impl,
            weight=weight,
            bias=bias,
            class_names=names,
            hparams=hparams.as_dict(),
            epoch=epoch,
            history=history,
            seed=hparams.seed,
            optimizer_state=model.optimizer_state(),
            rng_state={"shuffle": shuffle_generator.get_state()},
            input_standardization=None if stats is None else {"mean": stats[0].cpu(), "std": stats[1].cpu()},
        ),
        path,
    )


def train_epoch(model, batches, learning_rates, on_batch=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the training batches, step i at learning_rates[i] (the schedule; an endless
    itertools.repeat(lr) for a constant rate).

    Returns the summed loss and the number of right answers, left on the device so that nothing
    waits for the device per batch: one of each for a model, or one per configuration for the
    sweep's StackedSoftmax, whose losses are batch x K and its logits batch x K x 10.
    """
    loss_sum = correct = 0
    for (X, y), lr in zip(batches, learning_rates, strict=False):
        losses, logits = model.train_step(X, y, lr)
        labels = y if logits.dim() == 2 else y.unsqueeze(1)
        loss_sum = loss_sum + losses.sum(0)
        correct = correct + (logits.argmax(-1) == labels).sum(0)
        if on_batch is not None:
            on_batch()
    return loss_sum, correct


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    test_acc: float
    test_loss: float
    seconds: float
    examples_per_s: float
    lr: float
    val_acc: float | None = None

    def as_dict(self) -> dict:
        entry = {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_acc": self.train_acc,
            "test_acc": self.test_acc,
            "test_loss": self.test_loss,
            "seconds": self.seconds,
            "examples_per_s": self.examples_per_s,
            "lr": self.lr,
        }
        if self.val_acc is not None:
            entry["val_acc"] = self.val_acc
        return entry


class TrainingCallbacks:
    """Hooks the training loop reports through; the CLI supplies Rich and TensorBoard versions."""

    def on_train_start(self, plan: "TrainingPlan") -> None: ...
    def on_batch_end(self) -> None: ...
    def on_epoch_end(self, metrics: EpochMetrics, model: SoftmaxRegression) -> None: ...
    def on_train_end(self, result: "TrainingResult", model: SoftmaxRegression) -> None: ...


class CallbackList:
    """Forwards every hook (any `on_*` call: training's, or the sweep's) to each callback in order.

    Every callback hears of each event even after Ctrl-C stopped one of them (the display,
    say): the logs stay complete and close. The stop is re-raised after.
    """

    def __init__(self, callbacks: Iterable) -> None:
        self.callbacks = list(callbacks)

    def __getattr__(self, hook: str):
        if not hook.startswith("on_"):
            raise AttributeError(hook)
        return functools.partial(self._call_each, hook)

    def _call_each(self, hook: str, *args) -> None:
        stop = None
        for callback in self.callbacks:
            try:
                getattr(callback, hook)(*args)
            except KeyboardInterrupt as exc:
                stop = exc
        if stop is not None:
            raise stop


class BestEffort:
    """Runs a callback whose failure must not cost the run: the logs (TensorBoard events, the run summary).

    Its first exception (a full disk, a quota, a file system gone read-only, a writer thread
    that died) is reported once through on_failure, the callback's close() (if any) is
    tried, and the callback is dropped for the rest of the run, so training and its
    checkpoints go on. KeyboardInterrupt is no Exception and passes through: a stop stays a stop.
    Like CallbackList, it forwards any `on_*` hook.
    """

    def __init__(self, callback, what: str, on_failure) -> None:
        self.callback = callback
        self.what = what
        self.on_failure = on_failure
        self.failure: str | None = None

    def __getattr__(self, hook: str):
        if not hook.startswith("on_"):
            raise AttributeError(hook)
        return functools.partial(self.call, hook)

    def call(self, hook: str, *args) -> None:
        """Any hook of the callback by name, `on_*` or its own (a compare summary's `stopped`)."""
        if self.failure is not None:
            return
        try:
            getattr(self.callback, hook)(*args)
        except Exception as exc:
            self.failure = describe_failure(exc)
            close = getattr(self.callback, "close", None)
            if close is not None:
                with suppress(Exception):
                    close()
            self.on_failure(f"{self.what} stopped: {self.failure}; training goes on")


def describe_failure(exc: BaseException) -> str:
    """One line for a foreign exception: an OSError's reason and file, else its type and first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


@dataclass
class TrainingPlan:
    hparams: Hparams
    device: torch.device
    start_epoch: int
    batches_per_epoch: int
    train_examples: int
    paths: RunPaths
    history: list[dict] = field(default_factory=list)  # the epochs a resumed checkpoint already holds
    validation_examples: int = 0  # held out of the train split by --val-split


@dataclass
class TrainingResult:
    hparams: Hparams
    device: torch.device
    history: list[dict]
    checkpoint: Path | None
    log_dir: Path | None = None
    epochs_done: int = 0  # the epoch the checkpoint on disk holds (a resumed one's, until this run saves one)
    interrupted: bool = False
    diverged: bool = False
    final_evaluation: Evaluation | None = None
    class_names: list[str] = field(default_factory=list)


@dataclass
class ComparedEpoch:
    """One epoch of scratch and concise side by side, and how far apart their weights are."""

    epoch: int
    scratch: dict
    concise: dict
    max_weight_diff: float
    max_bias_diff: float


class _WeightSnapshots(TrainingCallbacks):
    """Keeps each epoch's weights; given the other side's, compares the two after every epoch."""

    def __init__(self, against=None, on_compared=None) -> None:
        self.weights: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.against = against  # the other side's (history, weights), trained first
        self.on_compared = on_compared
        self.compared: list[ComparedEpoch] = []

    def on_epoch_end(self, metrics, model):
        weights = tuple(t.detach().cpu().clone() for t in model.weight_bias())
        self.weights.append(weights)
        if self.against is None:
            return
        history, their_weights = self.against
        at = len(self.weights) - 1
        row = ComparedEpoch(
            epoch=metrics.epoch,
            scratch=history[at],
            concise=metrics.as_dict(),
            max_weight_diff=float((their_weights[at][0] - weights[0]).abs().max()),
            max_bias_diff=float((their_weights[at][1] - weights[1]).abs().max()),
        )
        self.compared.append(row)
        if self.on_compared is not None:
            self.on_compared(row)


def compare_implementations(
    hparams: Hparams,
    data_dir: Path,
    run_dir: Path,
    device: torch.device,
    workers: int = 0,
    make_callbacks=None,
    on_compared=None,
) -> list[ComparedEpoch]:
    """Train scratch and concise from the same seed, so from the same initial weights and the
    same batch order, and compare them after every epoch.

    make_callbacks(impl) may supply callbacks for each of the two runs (a display, the run
    summary); on_compared(ComparedEpoch) hears each epoch as soon as both sides have it.
    """
    against = None
    for impl in ("scratch", "concise"):
        run_hparams = Hparams(
            **{**hparams.as_dict(), "impl": impl, "naive_softmax": hparams.naive_softmax and impl == "scratch"}
        )
        snapshots = _WeightSnapshots(against, on_compared)
        extra = make_callbacks(impl) if make_callbacks else []
        paths = RunPaths(data_dir=data_dir, log_dir=run_dir, checkpoint=run_dir / f"{impl}.pt")
        result = fit(run_hparams, paths, device, CallbackList([*extra, snapshots]), workers=workers)
        if result.interrupted:
            raise KeyboardInterrupt
        against = (result.history, snapshots.weights)
    return snapshots.compared
