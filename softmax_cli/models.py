"""Softmax regression two ways, as Dive into Deep Learning (chapter 3) writes it.

* Section 3.6, from scratch: `softmax`, `cross_entropy` and `sgd` exactly as the book
  writes them, and ScratchSoftmax, whose W and b are plain tensors with requires_grad.
* Section 3.7, concisely: ConciseSoftmax, nn.Flatten + nn.Linear(784, 10),
  nn.CrossEntropyLoss and torch.optim.SGD.

The book's `softmax` overflows: exp() of a logit above ~88 is inf in float32, and
`cross_entropy` then takes log(0). The stable forms, `log_softmax` (the LogSumExp trick)
and `cross_entropy_from_logits`, are what ScratchSoftmax uses unless --naive-softmax asks
for the book's. `sgd_momentum` extends the book's `sgd` with torch.optim.SGD's momentum and
weight decay rule, so both implementations stay comparable under every recipe.

Both models offer one small interface (SoftmaxRegression), so training, checkpoints and
evaluation treat them alike. Nothing here prints or knows the command line.
"""

from __future__ import annotations

import functools
from typing import Protocol

import torch
from torch import nn

from softmax_cli.config import Hparams
from softmax_cli.data.batches import NUM_CLASSES, NUM_INPUTS

InputStats = tuple[torch.Tensor, torch.Tensor]

# ---------------------------------------------------------------------------------------
# Section 3.6, as the book writes it


def softmax(X):
    X_exp = torch.exp(X)
    partition = X_exp.sum(1, keepdim=True)
    return X_exp / partition  # The broadcasting mechanism is applied here


def cross_entropy(y_hat, y):
    return -torch.log(y_hat[range(len(y_hat)), y])


def sgd(params, lr, batch_size):
    """Minibatch stochastic gradient descent."""
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


# ---------------------------------------------------------------------------------------
# The stable forms, and SGD with momentum and weight decay


def log_softmax(X: torch.Tensor) -> torch.Tensor:
    """log(softmax(X)) by the LogSumExp trick: subtracting the row max keeps exp() finite.

    The max is a constant shift (softmax is shift-invariant), so it needs no gradient.
    """
    X_max = X.amax(dim=1, keepdim=True).detach()
    shifted = X - X_max
    return shifted - torch.log(torch.exp(shifted).sum(1, keepdim=True))


def cross_entropy_from_logits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log_softmax(logits)[y] per example: finite for any finite logits.

    gather picks each row's y-th entry, like the book's [range(len(y_hat)), y] without
    building an index tensor from a Python range every batch.
    """
    return -log_softmax(logits).gather(1, y.unsqueeze(1)).squeeze(1)


def sgd_momentum(params, lr, batch_size, momentum, weight_decay, buffers: list) -> None:
    """The book's `sgd` plus torch.optim.SGD's weight decay and momentum, step for step.

    `buffers` holds one momentum buffer per parameter (None until the first step). lr, momentum
    and weight_decay may be tensors that broadcast against each parameter (a sweep's values, one
    per configuration); a tensor's terms are always applied, and for a 0 they change nothing.
    """
    with torch.no_grad():
        for i, param in enumerate(params):
            grad = param.grad / batch_size
            if _applies(weight_decay):
                grad = grad + weight_decay * param
            if _applies(momentum):
                if buffers[i] is None:
                    buffers[i] = grad.clone()
                else:
                    buffers[i].mul_(momentum).add_(grad)
                grad = buffers[i]
            param -= lr * grad
            param.grad.zero_()


def _applies(setting) -> bool:
    """Whether sgd_momentum applies a term: a nonzero number, or any tensor of them."""
    return isinstance(setting, torch.Tensor) or setting != 0


def standardize(X: torch.Tensor, stats: InputStats | None) -> torch.Tensor:
    """Flatten to B x 784 and, when stats are given, subtract the per-pixel mean and divide by std."""
    X = X.reshape((-1, NUM_INPUTS))
    if stats is None:
        return X
    mean, std = stats
    return (X - mean) / std


def column_major(W: torch.Tensor) -> torch.Tensor:
    """A copy of W with the same values stored column-major, as nn.Linear stores its weight.

    Why: for a 784 x 10 matrix that layout takes a BLAS path about twice as fast for X @ W.
    """
    return torch.empty_strided(W.shape, (1, W.shape[0]), device=W.device).copy_(W)


# ---------------------------------------------------------------------------------------
# The two implementations


class SoftmaxRegression(Protocol):
    """What training, checkpoints and evaluation need from an implementation."""

    impl: str
    input_stats: InputStats | None

    def logits(self, X: torch.Tensor) -> torch.Tensor: ...
    def prepare_to_train(self) -> None: ...
    def train_step(self, X: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]: ...
    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]: ...
    def optimizer_state(self) -> dict | None: ...
    def load_optimizer_state(self, state: dict | None) -> None: ...


class ScratchSoftmax:
    """Section 3.6: W (784 x 10) and b (10) as plain tensors with requires_grad; the rest by hand."""

    impl = "scratch"

    def __init__(self, W: torch.Tensor, b: torch.Tensor, hparams: Hparams, input_stats: InputStats | None = None):
        self.W = column_major(W).requires_grad_(True)
        self.b = b.clone().requires_grad_(True)
        self.naive = hparams.naive_softmax
        self.momentum = hparams.momentum
        self.weight_decay = hparams.weight_decay
        self.momentum_buffers: list = [None, None]
        self.input_stats = input_stats

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        return torch.matmul(standardize(X, self.input_stats), self.W) + self.b

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example loss; --naive-softmax uses the book's exact softmax then cross_entropy."""
        if self.naive:
            return cross_entropy(softmax(logits), y)
        return cross_entropy_from_logits(logits, y)

    def prepare_to_train(self) -> None:
        """Nothing to build: the update is the book's sgd."""

    def train_step(self, X: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(X)
        losses = self.loss(logits, y)
        losses.sum().backward()
        if self.momentum or self.weight_decay:
            sgd_momentum([self.W, self.b], lr, X.shape[0], self.momentum, self.weight_decay, self.momentum_buffers)
        else:
            sgd([self.W, self.b], lr, X.shape[0])
        return losses.detach(), logits.detach()

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
    """Section 3.7: nn.Flatten + nn.Linear(784, 10), nn.CrossEntropyLoss and torch.optim.SGD."""

    impl = "concise"

    def __init__(self, W: torch.Tensor, b: torch.Tensor, hparams: Hparams, input_stats: InputStats | None = None):
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(NUM_INPUTS, NUM_CLASSES)).to(W.device)
        # The book draws with nn.init.normal_(std=0.01); copying the shared draw instead
        # makes scratch and concise start from identical weights for the same seed.
        with torch.no_grad():
            self.net[1].weight.copy_(W.T)
            self.net[1].bias.copy_(b)
        self.loss = nn.CrossEntropyLoss(reduction="none")
        self.hparams = hparams
        self.input_stats = input_stats

    @functools.cached_property
    def trainer(self) -> torch.optim.SGD:
        # Built when training first needs it: constructing torch.optim's SGD imports
        # torch._dynamo (about 0.9 s here), which evaluating a checkpoint never needs.
        return torch.optim.SGD(self.net.parameters(), **sgd_settings(self.hparams))

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(standardize(X, self.input_stats))

    def prepare_to_train(self) -> None:
        """Build the optimizer now, so its one-time import of torch._dynamo is not timed as an epoch's."""
        _ = self.trainer

    def train_step(self, X: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(X)
        losses = self.loss(logits, y)
        self.trainer.zero_grad()
        losses.mean().backward()
        for group in self.trainer.param_groups:  # how torch's own lr schedulers set it
            group["lr"] = lr
        self.trainer.step()
        return losses.detach(), logits.detach()

    def weight_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        linear = self.net[1]
        return linear.weight.detach().T, linear.bias.detach()

    def optimizer_state(self) -> dict | None:
        return self.trainer.state_dict()

    def load_optimizer_state(self, state: dict | None) -> None:
        """Take the momentum buffers from `state`; every setting stays what sgd_settings(hparams) made.

        torch's load_state_dict would also adopt the file's lr, momentum, maximize, ...: a
        tampered checkpoint could then train uphill while its hparams say otherwise.
        """
        if state:
            own = self.trainer.state_dict()
            own["state"] = {
                index: {"momentum_buffer": entry["momentum_buffer"]}
                for index, entry in state["state"].items()
                if entry.get("momentum_buffer") is not None
            }
            self.trainer.load_state_dict(own)


def sgd_settings(hparams: Hparams) -> dict[str, object]:
    """Every setting of the concise model's torch.optim.SGD, from the hyperparameters alone.

    The one rule for the optimizer: a fresh run and a resumed one build it from here, and a
    checkpoint's stored param_groups are never read back (only its momentum buffers are).
    """
    return {
        "lr": hparams.lr,
        "momentum": hparams.momentum,
        "weight_decay": hparams.weight_decay,
        "dampening": 0,
        "nesterov": False,
        "maximize": False,
    }


IMPLEMENTATIONS = {cls.impl: cls for cls in (ScratchSoftmax, ConciseSoftmax)}


def initial_parameters(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W ~ N(0, 0.01) (784 x 10) and b = 0, drawn once on the CPU from `seed` for both implementations."""
    generator = torch.Generator().manual_seed(seed)
    W = torch.normal(0, 0.01, size=(NUM_INPUTS, NUM_CLASSES), generator=generator)
    return W, torch.zeros(NUM_CLASSES)


def make_model(
    hparams: Hparams,
    device: torch.device,
    W: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    input_stats: InputStats | None = None,
) -> SoftmaxRegression:
    """Build the implementation named by hparams.impl, from given weights or a fresh seeded draw."""
    if W is None or b is None:
        W, b = initial_parameters(hparams.seed)
    if input_stats is not None:
        input_stats = (input_stats[0].to(device), input_stats[1].to(device))
    return IMPLEMENTATIONS[hparams.impl](W.to(device), b.to(device), hparams, input_stats)


def model_from_checkpoint(checkpoint: dict, device: torch.device, to_train: bool = True) -> SoftmaxRegression:
    """Rebuild a model (weights, input standardisation and, to train it on, the optimizer state)
    from a validated checkpoint."""
    hparams = Hparams.from_checkpoint(checkpoint)
    stats = checkpoint.get("input_standardization")
    input_stats = (stats["mean"], stats["std"]) if stats else None
    model = make_model(hparams, device, checkpoint["weight"], checkpoint["bias"], input_stats)
    if to_train:
        model.load_optimizer_state(checkpoint.get("optimizer_state"))
    return model
