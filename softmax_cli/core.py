"""Softmax regression two ways (Dive into Deep Learning, chapter 3), and the loop that trains them.

* ScratchSoftmax: W and b as plain tensors, softmax, cross-entropy and minibatch SGD
  written by hand, as in section 3.6 "Implementation of Softmax Regression from Scratch".
* ConciseSoftmax: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), nn.CrossEntropyLoss
  and torch.optim.SGD, as in section 3.7 "Concise Implementation".

Both offer the same small interface (logits, train_step, set_lr, weight_bias, ...) so the
training loop, checkpoints and evaluation treat them alike. This module never prints and
knows nothing of the command line: it reports through TrainingCallbacks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

import torch
from torch import nn

from softmax_cli import checkpoint as ckpt
from softmax_cli.config import Hparams, RunPaths
from softmax_cli.data import (
    NUM_CLASSES,
    NUM_INPUTS,
    DataLoaderBatches,
    MemoryBatches,
    Split,
    class_names,
    read_split,
    validation_indices,
)
from softmax_cli.errors import SoftmaxError, TrainingDiverged

# ---------------------------------------------------------------------------------------
# From scratch: the book's functions, with a numerically stable default.


def softmax_naive(X: torch.Tensor) -> torch.Tensor:
    """The book's softmax: exp(X) / row sums. exp overflows to inf for logits above ~88."""
    X_exp = torch.exp(X)
    partition = X_exp.sum(1, keepdim=True)
    return X_exp / partition


def cross_entropy_naive(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The book's cross-entropy on probabilities: -log(y_hat[y]); log(0) gives inf."""
    return -torch.log(y_hat[range(len(y_hat)), y])


def log_softmax(X: torch.Tensor) -> torch.Tensor:
    """log(softmax(X)) by the LogSumExp trick: subtracting the row max keeps exp() finite.

    The max is a constant shift (softmax is shift-invariant), so it needs no gradient.
    """
    X_max = X.amax(dim=1, keepdim=True).detach()
    shifted = X - X_max
    return shifted - torch.log(torch.exp(shifted).sum(1, keepdim=True))


def softmax(X: torch.Tensor) -> torch.Tensor:
    """Stable softmax: the same as the book's, with the row max subtracted first."""
    return torch.exp(log_softmax(X))


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Stable cross-entropy on logits: -log_softmax(logits)[y], finite for any finite logits.

    gather picks each row's y-th entry, like the book's [range(len(y_hat)), y] without
    building an index tensor from a Python range every batch.
    """
    return -log_softmax(logits).gather(1, y.unsqueeze(1)).squeeze(1)


def sgd(params, lr: float, batch_size: int, momentum: float = 0.0, weight_decay: float = 0.0,
        buffers: list | None = None) -> None:
    """Minibatch SGD as in the book: the loss was summed over the batch, so divide by batch_size.

    With momentum or weight decay it follows torch.optim.SGD's update rule exactly, so
    the two implementations stay comparable under every recipe.
    """
    with torch.no_grad():
        for i, param in enumerate(params):
            grad = param.grad / batch_size
            if weight_decay:
                grad = grad + weight_decay * param
            if momentum:
                if buffers[i] is None:
                    buffers[i] = grad.clone()
                else:
                    buffers[i].mul_(momentum).add_(grad)
                grad = buffers[i]
            param -= lr * grad
            param.grad.zero_()


def standardize(X: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Flatten to B x 784 and, when stats are given, subtract the per-pixel mean and divide by std."""
    X = X.reshape((-1, NUM_INPUTS))
    if stats is None:
        return X
    mean, std = stats
    return (X - mean) / std


class SoftmaxRegression(Protocol):
    """What the training loop, checkpoints and evaluation need from an implementation."""

    impl: str
    input_stats: tuple[torch.Tensor, torch.Tensor] | None

    def logits(self, X: torch.Tensor) -> torch.Tensor: ...
    def train_step(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
    def set_lr(self, lr: float) -> None: ...
    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]: ...
    def optimizer_state(self) -> dict | None: ...
    def load_optimizer_state(self, state: dict | None) -> None: ...


class ScratchSoftmax:
    """W (784 x 10) and b (10) as plain tensors with requires_grad; everything else by hand."""

    impl = "scratch"

    def __init__(self, W: torch.Tensor, b: torch.Tensor, hparams: Hparams,
                 input_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        # Same values as the book's W, stored column-major (as nn.Linear stores its weight):
        # for a 784 x 10 matrix that layout takes a BLAS path about twice as fast for X @ W.
        self.W = torch.empty_strided(W.shape, (1, W.shape[0]), device=W.device).copy_(W).requires_grad_(True)
        self.b = b.clone().requires_grad_(True)
        self.lr = hparams.lr
        self.naive = hparams.naive_softmax
        self.momentum = hparams.momentum
        self.weight_decay = hparams.weight_decay
        self.momentum_buffers: list = [None, None]
        self.input_stats = input_stats

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        return torch.matmul(standardize(X, self.input_stats), self.W) + self.b

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example loss; --naive-softmax uses the book's exact exp/sum then -log form."""
        if self.naive:
            return cross_entropy_naive(softmax_naive(logits), y)
        return cross_entropy(logits, y)

    def train_step(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(X)
        l = self.loss(logits, y)
        l.sum().backward()
        sgd([self.W, self.b], self.lr, X.shape[0], self.momentum, self.weight_decay, self.momentum_buffers)
        return l.detach(), logits.detach()

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.W.detach(), self.b.detach()

    def optimizer_state(self) -> dict | None:
        if not self.momentum:
            return None
        return {"momentum_buffers": [None if buf is None else buf.cpu() for buf in self.momentum_buffers]}

    def load_optimizer_state(self, state: dict | None) -> None:
        if state:
            device = self.W.device
            self.momentum_buffers = [None if buf is None else buf.to(device) for buf in state["momentum_buffers"]]


class ConciseSoftmax:
    """nn.Flatten + nn.Linear(784, 10), nn.CrossEntropyLoss and torch.optim.SGD."""

    impl = "concise"

    def __init__(self, W: torch.Tensor, b: torch.Tensor, hparams: Hparams,
                 input_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(NUM_INPUTS, NUM_CLASSES)).to(W.device)
        # The book draws with nn.init.normal_(std=0.01); copying the shared draw instead
        # makes scratch and concise start from identical weights for the same seed.
        with torch.no_grad():
            self.net[1].weight.copy_(W.T)
            self.net[1].bias.copy_(b)
        self.loss = nn.CrossEntropyLoss(reduction="none")
        self.trainer = torch.optim.SGD(self.net.parameters(), lr=hparams.lr, momentum=hparams.momentum,
                                       weight_decay=hparams.weight_decay)
        self.input_stats = input_stats

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(standardize(X, self.input_stats))

    def train_step(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(X)
        l = self.loss(logits, y)
        self.trainer.zero_grad()
        l.mean().backward()
        self.trainer.step()
        return l.detach(), logits.detach()

    def set_lr(self, lr: float) -> None:
        for group in self.trainer.param_groups:
            group["lr"] = lr

    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        linear = self.net[1]
        return linear.weight.detach().T, linear.bias.detach()

    def optimizer_state(self) -> dict | None:
        return self.trainer.state_dict()

    def load_optimizer_state(self, state: dict | None) -> None:
        if state:
            self.trainer.load_state_dict(state)


IMPLEMENTATIONS = {cls.impl: cls for cls in (ScratchSoftmax, ConciseSoftmax)}


def initial_parameters(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W ~ N(0, 0.01) (784 x 10) and b = 0, drawn once on the CPU from `seed` for both implementations."""
    generator = torch.Generator().manual_seed(seed)
    W = torch.normal(0, 0.01, size=(NUM_INPUTS, NUM_CLASSES), generator=generator)
    return W, torch.zeros(NUM_CLASSES)


def make_model(hparams: Hparams, device: torch.device, W: torch.Tensor | None = None,
               b: torch.Tensor | None = None,
               input_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> SoftmaxRegression:
    """Build the implementation named by hparams.impl, from given weights or a fresh seeded draw."""
    if W is None or b is None:
        W, b = initial_parameters(hparams.seed)
    if input_stats is not None:
        input_stats = (input_stats[0].to(device), input_stats[1].to(device))
    return IMPLEMENTATIONS[hparams.impl](W.to(device), b.to(device), hparams, input_stats)


def model_from_checkpoint(checkpoint: dict, device: torch.device) -> SoftmaxRegression:
    """Rebuild a model (weights, optimizer state, input standardisation) from a validated checkpoint."""
    hparams = Hparams.from_checkpoint(checkpoint)
    stats = checkpoint.get("input_standardization")
    input_stats = (stats["mean"], stats["std"]) if stats else None
    model = make_model(hparams, device, checkpoint["weight"], checkpoint["bias"], input_stats)
    model.load_optimizer_state(checkpoint.get("optimizer_state"))
    return model


# ---------------------------------------------------------------------------------------
# Devices


def resolve_device(name: str) -> torch.device:
    """auto: cuda if available, then mps, then cpu. Raises ValueError naming what is missing."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}: CUDA is not available on this machine (try --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name}: no such GPU; this machine has {torch.cuda.device_count()} (cuda:0..)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{name}: MPS is not available on this machine (try --device cpu)")
    elif device.type != "cpu":
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


# ---------------------------------------------------------------------------------------
# Training and evaluation


@dataclass
class Evaluation:
    """Mean cross-entropy, accuracy and the confusion matrix (rows true, columns predicted)."""

    loss: float
    accuracy: float
    confusion: torch.Tensor
    n: int


def evaluate(model: SoftmaxRegression, batches: Iterable) -> Evaluation:
    """Evaluate on every batch; sums stay on the device and are read once at the end."""
    loss_sum = confusion = None
    with torch.no_grad():
        for X, y in batches:
            logits = model.logits(X)
            batch_loss = nn.functional.cross_entropy(logits, y, reduction="sum")
            batch_confusion = torch.bincount(y * NUM_CLASSES + logits.argmax(1), minlength=NUM_CLASSES**2)
            loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
            confusion = batch_confusion if confusion is None else confusion + batch_confusion
    confusion = confusion.reshape(NUM_CLASSES, NUM_CLASSES).cpu()
    n = int(confusion.sum())
    return Evaluation(loss=loss_sum.item() / n, accuracy=int(confusion.trace()) / n, confusion=confusion, n=n)


def train_epoch(model: SoftmaxRegression, batches, on_batch=None, lr_for_batch=None) -> tuple[float, float]:
    """One pass over the training batches; returns (mean loss, accuracy) read once at the end.

    lr_for_batch(i), when given, sets the learning rate before the i-th step (a schedule).
    """
    loss_sum = correct = None
    for i, (X, y) in enumerate(batches):
        if lr_for_batch is not None:
            model.set_lr(lr_for_batch(i))
        losses, logits = model.train_step(X, y)
        batch_loss, batch_correct = losses.sum(), (logits.argmax(1) == y).sum()
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        if on_batch is not None:
            on_batch()
    n = batches.num_examples
    return loss_sum.item() / n, correct.item() / n


def _schedule_for_epoch(hparams: Hparams, epoch_index: int, batches_per_epoch: int):
    """The per-batch learning rates of one epoch, or None when the rate is constant."""
    if hparams.schedule == "constant":
        return None
    total = hparams.epochs * batches_per_epoch
    first = epoch_index * batches_per_epoch
    return lambda i: hparams.lr_at((first + i) / total)


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
            "epoch": self.epoch, "train_loss": self.train_loss, "train_acc": self.train_acc,
            "test_acc": self.test_acc, "test_loss": self.test_loss, "seconds": self.seconds,
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


class CallbackList(TrainingCallbacks):
    """Forwards every hook to each callback in order."""

    def __init__(self, callbacks: Iterable[TrainingCallbacks]) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, plan):
        for callback in self.callbacks:
            callback.on_train_start(plan)

    def on_batch_end(self):
        for callback in self.callbacks:
            callback.on_batch_end()

    def on_epoch_end(self, metrics, model):
        for callback in self.callbacks:
            callback.on_epoch_end(metrics, model)

    def on_train_end(self, result, model):
        for callback in self.callbacks:
            callback.on_train_end(result, model)


@dataclass
class TrainingPlan:
    hparams: Hparams
    device: torch.device
    start_epoch: int
    batches_per_epoch: int
    train_examples: int
    paths: RunPaths


@dataclass
class TrainingResult:
    hparams: Hparams
    device: torch.device
    history: list[dict]
    checkpoint: Path | None
    log_dir: Path | None = None
    interrupted: bool = False
    final_evaluation: Evaluation | None = None
    class_names: list[str] = field(default_factory=list)


@dataclass
class _Data:
    train: object
    test: object
    validation: object | None
    input_stats: tuple[torch.Tensor, torch.Tensor] | None


def input_statistics(train: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean and std of the train split in [0, 1] units; std floored at one grey level.

    Summed in chunks so the split is never held as float32 (188 MB) at once.
    """
    pixels = train.images.reshape(len(train), NUM_INPUTS)
    total = torch.zeros(NUM_INPUTS, dtype=torch.float64)
    squares = torch.zeros(NUM_INPUTS, dtype=torch.float64)
    for chunk in pixels.split(8192):
        values = chunk.to(torch.float64) / 255
        total += values.sum(0)
        squares += (values * values).sum(0)
    n = len(pixels)
    mean = total / n
    variance = (squares - n * mean * mean) / max(n - 1, 1)
    return mean.float(), variance.clamp_min(0).sqrt().float().clamp_min(1 / 255)


def _prepare_data(hparams: Hparams, data_dir: Path, device: torch.device, workers: int,
                  shuffle_generator: torch.Generator, resuming: bool) -> _Data:
    train_split, test_split = read_split(data_dir, "train"), read_split(data_dir, "test")
    train_idx = val_idx = None
    if hparams.val_split:
        train_idx, val_idx = validation_indices(len(train_split), hparams.val_split, hparams.seed)
        validation = MemoryBatches(train_split.subset(val_idx), hparams.batch_size, device, shuffle=False)
        train_split = train_split.subset(train_idx)
    else:
        validation = None
    # A resumed run keeps the statistics stored in its checkpoint.
    input_stats = input_statistics(train_split) if hparams.standardize and not resuming else None
    if hparams.loader == "dataloader":
        train = DataLoaderBatches(data_dir, "train", hparams.batch_size, device, shuffle=True, workers=workers,
                                  generator=shuffle_generator, indices=train_idx)
        test = DataLoaderBatches(data_dir, "test", hparams.batch_size, device, shuffle=False, workers=workers)
    else:
        train = MemoryBatches(train_split, hparams.batch_size, device, shuffle=True, generator=shuffle_generator)
        test = MemoryBatches(test_split, hparams.batch_size, device, shuffle=False)
    return _Data(train, test, validation, input_stats)


def _shuffle_generator(hparams: Hparams, device: torch.device) -> torch.Generator:
    # The memory loader permutes on the device itself; the DataLoader's sampler runs on the CPU.
    where = device if hparams.loader == "memory" else torch.device("cpu")
    return torch.Generator(device=where).manual_seed(hparams.seed)


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
    shuffle_generator = _shuffle_generator(hparams, device)
    data = _prepare_data(hparams, paths.data_dir, device, workers, shuffle_generator, resume_from is not None)
    names = class_names()
    if resume_from is None:
        model = make_model(hparams, device, input_stats=data.input_stats)
        history: list[dict] = []
        start_epoch = 0
    else:
        model = model_from_checkpoint(resume_from, device)
        history = list(resume_from["history"])
        start_epoch = resume_from["epoch"]
        state = resume_from["rng_state"]["shuffle"]
        try:
            shuffle_generator.set_state(state)
        except RuntimeError:
            # A CPU generator's state (Mersenne Twister) and a GPU's (Philox) differ in size.
            cpu_state_size = torch.Generator().get_state().numel()
            trained_on = "cpu" if state.numel() == cpu_state_size else "a GPU (cuda or mps)"
            raise SoftmaxError(
                f"the checkpoint's batch order was drawn on {trained_on}, but this run is on {device}; "
                "resume on the device it was trained on (--device) to continue the same batch order"
            ) from None

    result = TrainingResult(hparams, device, history, checkpoint=None, log_dir=paths.log_dir, class_names=names)
    callbacks.on_train_start(TrainingPlan(hparams, device, start_epoch, len(data.train),
                                          data.train.num_examples, paths))
    try:
        for epoch_index in range(start_epoch, hparams.epochs):
            model.set_lr(hparams.lr)
            schedule = _schedule_for_epoch(hparams, epoch_index, len(data.train))
            started = time.perf_counter()
            train_loss, train_acc = train_epoch(model, data.train, callbacks.on_batch_end, schedule)
            train_seconds = time.perf_counter() - started
            epoch = epoch_index + 1
            # The epoch's loss is measured before each step, so the last step can still have
            # overflowed the weights: check them too before they become "the last good checkpoint".
            if not (math.isfinite(train_loss) and all(bool(torch.isfinite(t).all()) for t in model.weight_bias())):
                raise TrainingDiverged(_divergence_message(epoch, train_loss, hparams, result.checkpoint))
            result.final_evaluation = evaluate(model, data.test)
            val_acc = evaluate(model, data.validation).accuracy if data.validation is not None else None
            metrics = EpochMetrics(
                epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                test_acc=result.final_evaluation.accuracy, test_loss=result.final_evaluation.loss,
                seconds=time.perf_counter() - started,
                examples_per_s=data.train.num_examples / train_seconds,
                lr=schedule(len(data.train) - 1) if schedule else hparams.lr,
                val_acc=val_acc,
            )
            history.append(metrics.as_dict())
            save_training_checkpoint(model, hparams, epoch, history, shuffle_generator, names, paths.checkpoint)
            result.checkpoint = paths.checkpoint
            callbacks.on_epoch_end(metrics, model)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        callbacks.on_train_end(result, model)
    return result


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


def save_training_checkpoint(model: SoftmaxRegression, hparams: Hparams, epoch: int, history: list[dict],
                             shuffle_generator: torch.Generator, names: list[str], path: Path) -> None:
    """Save everything needed to evaluate the model or resume training bit for bit."""
    weight, bias = model.weight_bias()
    stats = model.input_stats
    ckpt.save_checkpoint(
        ckpt.build_checkpoint(
            impl=model.impl, weight=weight, bias=bias, class_names=names, hparams=hparams.as_dict(),
            epoch=epoch, history=history, seed=hparams.seed, optimizer_state=model.optimizer_state(),
            rng_state={"shuffle": shuffle_generator.get_state()},
            input_standardization=None if stats is None else {"mean": stats[0].cpu(), "std": stats[1].cpu()},
        ),
        path,
    )


def evaluate_checkpoint(checkpoint: dict, data_dir: Path, device: torch.device,
                        batch_size: int | None = None) -> tuple[Evaluation, SoftmaxRegression]:
    """Evaluate a checkpoint on the 10,000 test images with the same code path training used."""
    model = model_from_checkpoint(checkpoint, device)
    batch_size = batch_size or Hparams.from_checkpoint(checkpoint).batch_size
    test = MemoryBatches(read_split(data_dir, "test"), batch_size, device, shuffle=False)
    return evaluate(model, test), model


def make_run_dir(runs_dir: Path, impl: str, tag: str) -> Path:
    """A fresh folder runs/<impl>/<timestamp>-<tag>, so repeated runs never mix curves."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = runs_dir / impl
    for attempt in range(1, 1000):
        suffix = "" if attempt == 1 else f"-{attempt}"
        candidate = base / f"{stamp}-{tag}{suffix}"
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise SoftmaxError(f"cannot create the run folder {candidate}: {exc.strerror}") from None
    raise SoftmaxError(f"cannot create a fresh run folder under {base}")


@dataclass
class Predictions:
    """Test examples with the model's verdicts: index in the test split, image, label, prediction, confidence."""

    indices: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    predicted: torch.Tensor
    confidence: torch.Tensor


def predict_test_examples(checkpoint: dict, data_dir: Path, device: torch.device, count: int,
                          only_wrong: bool = False) -> Predictions:
    """The first `count` test images (or the first `count` misclassified ones) with their predictions."""
    model = model_from_checkpoint(checkpoint, device)
    test = read_split(data_dir, "test")
    batches = MemoryBatches(test, Hparams.from_checkpoint(checkpoint).batch_size, device, shuffle=False)
    with torch.no_grad():
        probabilities = torch.cat([torch.softmax(model.logits(X), dim=1) for X, _ in batches]).cpu()
    confidence, predicted = probabilities.max(dim=1)
    candidates = torch.nonzero(predicted != test.labels).flatten() if only_wrong else torch.arange(len(test))
    chosen = candidates[:count]
    return Predictions(chosen, test.images[chosen], test.labels[chosen], predicted[chosen], confidence[chosen])


@dataclass
class ComparedEpoch:
    """One epoch of scratch and concise side by side, and how far apart their weights are."""

    epoch: int
    scratch: dict
    concise: dict
    max_weight_diff: float
    max_bias_diff: float


class _WeightSnapshots(TrainingCallbacks):
    def __init__(self) -> None:
        self.weights: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_epoch_end(self, metrics, model):
        self.weights.append(tuple(t.detach().cpu().clone() for t in model.weight_bias()))


def compare_implementations(hparams: Hparams, data_dir: Path, run_dir: Path, device: torch.device,
                            workers: int = 0, make_callbacks=None) -> list[ComparedEpoch]:
    """Train scratch and concise from the same seed, so from the same initial weights and the
    same batch order, and compare them after every epoch.

    make_callbacks(impl) may supply display callbacks for each of the two runs.
    """
    runs = {}
    for impl in ("scratch", "concise"):
        run_hparams = Hparams(**{**hparams.as_dict(), "impl": impl,
                                 "naive_softmax": hparams.naive_softmax and impl == "scratch"})
        snapshots = _WeightSnapshots()
        extra = make_callbacks(impl) if make_callbacks else []
        paths = RunPaths(data_dir=data_dir, log_dir=run_dir, checkpoint=run_dir / f"{impl}.pt")
        result = fit(run_hparams, paths, device, CallbackList([snapshots, *extra]), workers=workers)
        if result.interrupted:
            raise KeyboardInterrupt
        runs[impl] = (result.history, snapshots.weights)
    (scratch_history, scratch_weights), (concise_history, concise_weights) = runs["scratch"], runs["concise"]
    return [
        ComparedEpoch(
            epoch=s_entry["epoch"], scratch=s_entry, concise=c_entry,
            max_weight_diff=float((s_w[0] - c_w[0]).abs().max()),
            max_bias_diff=float((s_w[1] - c_w[1]).abs().max()),
        )
        for s_entry, c_entry, s_w, c_w in zip(scratch_history, concise_history, scratch_weights, concise_weights)
    ]
