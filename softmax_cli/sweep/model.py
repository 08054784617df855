"""K copies of the book's scratch softmax regression trained at once on the same batches.

A sweep's configurations that share a batch size and a seed see the very same batches, so
they can share the work that dominates a 784 x 10 model: reading and converting the batch,
and the matrix products. StackedSoftmax holds their K weight matrices side by side as one
(K*10) x 784 matrix, which is each configuration's 784 x 10 W transposed (the column-major
layout ScratchSoftmax uses), stacked:

    logits  = X @ Wt.T + b                      B x (K*10): one matrix product for all K
    losses  = cross_entropy_from_logits(...)    B x K: the stable form, per configuration
    losses.sum().backward()                     configuration k's loss depends on its W, b only
    sgd(...), sgd_momentum(...)                 the book's update, per-configuration lr, momentum, decay

The update is models.sgd and models.sgd_momentum themselves, with the learning rates, momenta
and weight decays as K x 1 x 1 tensors instead of Python floats, so each configuration trains
as its own `softmax train --impl scratch` would, within float rounding (the stacked matrix
product sums in another order). training.train_epoch drives it, as it drives one model. Nothing
here prints.
"""

from __future__ import annotations

import torch

from softmax_cli.config import Hparams
from softmax_cli.data.batches import NUM_CLASSES, NUM_INPUTS
from softmax_cli.models import (
    InputStats,
    cross_entropy_from_logits,
    initial_parameters,
    sgd,
    sgd_momentum,
    standardize,
)
from softmax_cli.sweep.grid import is_plain


class StackedSoftmax:
    """K ScratchSoftmax models in one: configs[k] is trained by the k-th slice.

    The plain configurations (no momentum, no weight decay) must come first (see
    grid.group_configs): their weights are one leaf tensor, stepped by the book's `sgd`; the
    others' are another, stepped by `sgd_momentum`. Each is K' x 10 x 784 (each configuration's
    W transposed, the column-major layout ScratchSoftmax uses) with biases K' x 10 x 1, so a
    K' x 1 x 1 tensor of learning rates, momenta or weight decays broadcasts against both.
    """

    impl = "scratch"

    def __init__(self, configs: list[Hparams], device: torch.device, input_stats: InputStats | None = None):
        plain = [is_plain(h) for h in configs]
        if plain != sorted(plain, reverse=True):
            raise ValueError("the plain configurations must come first")
        self.configs = configs
        self.k = len(configs)
        self.n_plain = sum(plain)
        drawn: dict[int, torch.Tensor] = {}
        for h in configs:
            if h.seed not in drawn:
                drawn[h.seed] = initial_parameters(h.seed)[0]
        # The same draw as make_model(seed): W ~ N(0, 0.01), b = 0, from each configuration's seed.
        W = torch.stack([drawn[h.seed].T for h in configs]).to(device)
        b = torch.zeros(self.k, NUM_CLASSES, 1, device=device)
        p = self.n_plain
        self.slices = [
            (W[start:stop].clone().requires_grad_(True), b[start:stop].clone().requires_grad_(True))
            for start, stop in ((0, p), (p, self.k))
            if stop > start
        ]
        self.dropped: set[int] = set()
        stepping = configs[p:]
        self.momentum = torch.tensor([h.momentum for h in stepping], device=device).view(-1, 1, 1)
        self.weight_decay = torch.tensor([h.weight_decay for h in stepping], device=device).view(-1, 1, 1)
        self.buffers: list = [None, None]  # momentum buffers of the stepping slice, as sgd_momentum keeps them
        self.input_stats = None if input_stats is None else (input_stats[0].to(device), input_stats[1].to(device))

    # ------------------------------------------------------------------ forward and step

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every configuration's W (K x 10 x 784) and b (K x 10 x 1), in config order."""
        if len(self.slices) == 1:
            return self.slices[0]
        return torch.cat([W for W, _ in self.slices]), torch.cat([b for _, b in self.slices])

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        """B x K x 10: every configuration's logits for the batch, from one matrix product."""
        W, b = self.stacked()
        flat = torch.matmul(standardize(X, self.input_stats), W.reshape(-1, NUM_INPUTS).T) + b.reshape(-1)
        return flat.view(-1, self.k, NUM_CLASSES)

    def train_step(self, X: torch.Tensor, y: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One minibatch step of every configuration, with lr (K,) float32; returns (losses B x K, logits)."""
        logits = self.logits(X)
        batch = logits.shape[0]
        # Row i*K + k is example i seen by configuration k, so the labels repeat K times each.
        losses = cross_entropy_from_logits(logits.reshape(-1, NUM_CLASSES), y.repeat_interleave(self.k))
        losses = losses.view(batch, self.k)
        losses.sum().backward()
        lr = lr.view(-1, 1, 1)
        p = self.n_plain
        if p:
            sgd(self.slices[0], lr[:p], batch)
        if p < self.k:
            sgd_momentum(self.slices[-1], lr[p:], batch, self.momentum, self.weight_decay, self.buffers)
        return losses.detach(), logits.detach()

    def learning_rates(self, epoch_index: int, batches: int) -> torch.Tensor:
        """batches x K float32: every configuration's learning rate at each step of the epoch, from
        the one schedule (Hparams.learning_rates); a dropped configuration's is 0."""
        rates = [h.learning_rates(epoch_index, batches) for h in self.configs]
        for k in self.dropped:
            rates[k] = [0.0] * batches
        # Rounded to float32 as multiplying a float32 tensor by a Python float rounds it.
        device = self.slices[0][0].device
        return torch.tensor(rates, dtype=torch.float64, device=device).T.to(torch.float32)

    def evaluate(self, batches) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(cross-entropy sums, correct counts), K each, and the number of examples, as evaluation.evaluate."""
        loss_sum = correct = 0
        n = 0
        with torch.no_grad():
            for X, y in batches:
                logits = self.logits(X)
                losses = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, NUM_CLASSES), y.repeat_interleave(self.k), reduction="none"
                )
                loss_sum = loss_sum + losses.view(-1, self.k).sum(0)
                correct = correct + (logits.argmax(2) == y.unsqueeze(1)).sum(0)
                n += len(y)
        return loss_sum, correct, n

    # ------------------------------------------------------------------ divergence and reading back

    def finite(self) -> torch.Tensor:
        """(K,) bool: whether each configuration's weights and bias are all finite."""
        with torch.no_grad():
            W, b = self.stacked()
            return torch.isfinite(W.reshape(self.k, -1)).all(1) & torch.isfinite(b.reshape(self.k, -1)).all(1)

    def drop(self, indices: list[int]) -> None:
        """Stop training these configurations: learning rate 0, weights and buffers zeroed, so
        their NaNs or infinities never reach a sum again; the others train on unchanged."""
        self.dropped.update(indices)
        with torch.no_grad():
            for k in indices:
                for tensor in self._parts(k):
                    tensor.zero_()

    def _parts(self, k: int) -> list[torch.Tensor]:
        """Configuration k's W and b slices (K' x ... views into the leaves), and its momentum buffers."""
        p = self.n_plain
        W, b = self.slices[0] if k < p else self.slices[-1]
        j = k if k < p else k - p
        buffers = [] if k < p else [buffer[j] for buffer in self.buffers if buffer is not None]
        return [W.detach()[j], b.detach()[j], *buffers]

    def weight_bias(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Configuration k's W (784 x 10, column-major as ScratchSoftmax stores it) and b."""
        W, b = self._parts(k)[:2]
        return W.T, b.view(-1)

    def optimizer_state(self, k: int) -> dict | None:
        """Configuration k's optimizer state as ScratchSoftmax.optimizer_state gives it (None without momentum)."""
        if not self.configs[k].momentum:
            return None
        buffers = self._parts(k)[2:]
        if not buffers:
            return {"momentum_buffers": [None, None]}
        return {"momentum_buffers": [buffers[0].T.cpu().clone(), buffers[1].view(-1).cpu().clone()]}
