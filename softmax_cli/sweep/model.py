"""K copies of the book's scratch softmax regression trained at once on the same batches.

A sweep's configurations that share a batch size and a seed see the very same batches, so
they can share the work that dominates a 784 x 10 model: reading and converting the batch,
and the matrix products. StackedSoftmax holds their K weight matrices side by side as one
(K*10) x 784 matrix, which is each configuration's 784 x 10 W transposed (the column-major
layout ScratchSoftmax uses), stacked:

    logits  = X @ Wt.T + b                      B x (K*10): one matrix product for all K
    losses  = cross_entropy_from_logits(...)    B x K: the stable form, per configuration
    losses.sum().backward()                     configuration k's loss depends on its W, b only
    stacked_sgd(...)                            per-configuration lr, momentum, weight decay

The update follows models.sgd and models.sgd_momentum operation for operation, with the
learning rates, momenta and weight decays as K x 1 x 1 tensors instead of Python floats, so
each configuration trains as its own `softmax train --impl scratch` would, within float
rounding (the stacked matrix product sums in another order). Nothing here prints.
"""

from __future__ import annotations

import math

import torch

from softmax_cli.config import Hparams
from softmax_cli.data.batches import NUM_CLASSES, NUM_INPUTS
from softmax_cli.models import InputStats, cross_entropy_from_logits, initial_parameters, standardize
from softmax_cli.sweep.grid import is_plain


class StackedSoftmax:
    """K ScratchSoftmax models in one: configs[k] is trained by the k-th slice.

    The plain configurations (no momentum, no weight decay) must come first (see
    sweep_grid.group_configs): they step with the book's `sgd` as one slice, the others
    with `sgd_momentum` as another.
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
        W = torch.stack([drawn[h.seed].T for h in configs]).reshape(self.k * NUM_CLASSES, NUM_INPUTS)
        self.Wt = W.to(device).requires_grad_(True)
        self.b = torch.zeros(self.k * NUM_CLASSES, device=device, requires_grad=True)
        self.base_lr = torch.tensor([h.lr for h in configs], dtype=torch.float64, device=device)
        self.cosine = torch.tensor([h.schedule == "cosine" for h in configs], device=device)
        stepping = configs[self.n_plain :]
        self.momentum = torch.tensor([h.momentum for h in stepping], device=device).view(-1, 1, 1)
        self.weight_decay = torch.tensor([h.weight_decay for h in stepping], device=device).view(-1, 1, 1)
        self.buffers: list[torch.Tensor] | None = None  # momentum buffers of the stepping slice, as sgd_momentum's
        self.input_stats = None if input_stats is None else (input_stats[0].to(device), input_stats[1].to(device))

    # ------------------------------------------------------------------ forward and step

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        """B x K x 10: every configuration's logits for the batch, from one matrix product."""
        flat = torch.matmul(standardize(X, self.input_stats), self.Wt.T) + self.b
        return flat.view(-1, self.k, NUM_CLASSES)

    def train_step(self, X: torch.Tensor, y: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One minibatch step of every configuration, with lr (K,) float32; returns (losses B x K, logits)."""
        logits = self.logits(X)
        batch = logits.shape[0]
        # Row i*K + k is example i seen by configuration k, so the labels repeat K times each.
        losses = cross_entropy_from_logits(logits.reshape(-1, NUM_CLASSES), y.repeat_interleave(self.k))
        losses = losses.view(batch, self.k)
        losses.sum().backward()
        self._sgd(lr, batch)
        return losses.detach(), logits.detach()

    def _sgd(self, lr: torch.Tensor, batch_size: int) -> None:
        """models.sgd on the plain slice, models.sgd_momentum on the rest, per-configuration tensors for floats."""
        p = self.n_plain
        with torch.no_grad():
            W, gW = self.Wt.view(self.k, NUM_CLASSES, NUM_INPUTS), self.Wt.grad.view(self.k, NUM_CLASSES, NUM_INPUTS)
            b, gb = self.b.view(self.k, NUM_CLASSES), self.b.grad.view(self.k, NUM_CLASSES)
            lr_W, lr_b = lr.view(-1, 1, 1), lr.view(-1, 1)
            if p:
                # models.sgd: param -= lr * param.grad / batch_size
                W[:p] -= lr_W[:p] * gW[:p] / batch_size
                b[:p] -= lr_b[:p] * gb[:p] / batch_size
            if p < self.k:
                # models.sgd_momentum. A weight decay of 0 adds 0 * param (exactly nothing), and a
                # momentum of 0 makes the buffer 0 * buffer + grad (exactly grad): the same steps
                # as sgd_momentum's skipped branches.
                decay_W, decay_b = self.weight_decay, self.weight_decay.view(-1, 1)
                grads = [gW[p:] / batch_size + decay_W * W[p:], gb[p:] / batch_size + decay_b * b[p:]]
                if self.buffers is None:
                    self.buffers = [grad.clone() for grad in grads]
                else:
                    self.buffers[0].mul_(self.momentum).add_(grads[0])
                    self.buffers[1].mul_(self.momentum.view(-1, 1)).add_(grads[1])
                W[p:] -= lr_W[p:] * self.buffers[0]
                b[p:] -= lr_b[p:] * self.buffers[1]
            # The next backward writes fresh gradients (the book zeroes them; 0 + g is g).
            self.Wt.grad = self.b.grad = None

    def learning_rates(self, epoch_index: int, epochs: int, batches: int) -> torch.Tensor:
        """batches x K float32: every configuration's learning rate before each step of the epoch.

        Computed in float64 exactly as Hparams.lr_at computes each (lr * 0.5 * (1 + cos)), then
        rounded to float32 as multiplying a float32 tensor by that Python float rounds it.
        """
        total, first = epochs * batches, epoch_index * batches
        cosines = [1.0 + math.cos(math.pi * ((first + i) / total)) for i in range(batches)]
        factor = torch.tensor(cosines, dtype=torch.float64, device=self.base_lr.device).view(-1, 1)
        annealed = self.base_lr * 0.5 * factor
        return torch.where(self.cosine, annealed, self.base_lr).to(torch.float32)

    def train_epoch(self, batches, lrs: torch.Tensor, on_batch=None) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over the batches; (loss sums, correct counts), K each, left on the device."""
        loss_sum = torch.zeros(self.k, device=self.Wt.device)
        correct = torch.zeros(self.k, dtype=torch.int64, device=self.Wt.device)
        for i, (X, y) in enumerate(batches):
            losses, logits = self.train_step(X, y, lrs[i])
            # Summed in float32 batch by batch, as training.train_epoch and evaluation.evaluate sum.
            loss_sum += losses.sum(0)
            correct += (logits.argmax(2) == y.unsqueeze(1)).sum(0)
            if on_batch is not None:
                on_batch()
        return loss_sum, correct

    def evaluate(self, batches) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(cross-entropy sums, correct counts), K each, and the number of examples, as evaluation.evaluate."""
        loss_sum = torch.zeros(self.k, device=self.Wt.device)
        correct = torch.zeros(self.k, dtype=torch.int64, device=self.Wt.device)
        n = 0
        with torch.no_grad():
            for X, y in batches:
                logits = self.logits(X)
                losses = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, NUM_CLASSES), y.repeat_interleave(self.k), reduction="none"
                )
                loss_sum += losses.view(-1, self.k).sum(0)
                correct += (logits.argmax(2) == y.unsqueeze(1)).sum(0)
                n += len(y)
        return loss_sum, correct, n

    # ------------------------------------------------------------------ divergence and reading back

    def finite(self) -> torch.Tensor:
        """(K,) bool: whether each configuration's weights and bias are all finite."""
        with torch.no_grad():
            W = torch.isfinite(self.Wt.view(self.k, -1)).all(1)
            return W & torch.isfinite(self.b.view(self.k, -1)).all(1)

    def drop(self, indices: list[int]) -> None:
        """Stop training these configurations: learning rate 0, weights and buffers zeroed, so
        their NaNs or infinities never reach a sum again; the others train on unchanged."""
        with torch.no_grad():
            index = torch.tensor(indices, device=self.Wt.device)
            self.base_lr[index] = 0.0
            self.Wt.view(self.k, -1)[index] = 0.0
            self.b.view(self.k, -1)[index] = 0.0
            stepping = [i - self.n_plain for i in indices if i >= self.n_plain]
            if self.buffers is not None and stepping:
                for buffer in self.buffers:
                    buffer[stepping] = 0.0

    def weight_bias(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Configuration k's W (784 x 10, column-major as ScratchSoftmax stores it) and b."""
        return self.Wt.detach().view(self.k, NUM_CLASSES, NUM_INPUTS)[k].T, self.b.detach().view(self.k, -1)[k]

    def optimizer_state(self, k: int) -> dict | None:
        """Configuration k's optimizer state as ScratchSoftmax.optimizer_state gives it (None without momentum)."""
        if not self.configs[k].momentum:
            return None
        if self.buffers is None:
            return {"momentum_buffers": [None, None]}
        j = k - self.n_plain
        return {"momentum_buffers": [self.buffers[0][j].T.cpu().clone(), self.buffers[1][j].cpu().clone()]}
