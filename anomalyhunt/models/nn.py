"""Neural-network building blocks shared by the generators and classifiers.

* :func:`pick_device` -- ``"auto"`` means CUDA when present.
* :class:`ResidualMLP` -- a dense residual network with an optional conditioning vector injected into every block; it
  can expose its per-block hidden activations and mix them between several contexts (SIGMA's layer interpolation).
* :class:`FrequencyEmbedding` -- Fourier features of a scalar in [0, 1].
* :func:`train_loop` -- mini-batch AdamW training with early stopping that keeps the best few epochs' weights.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "pick_device", "ResidualMLP", "FrequencyEmbedding", "train_loop", "batched_apply", "seeded", "clone_module",
    "sub_seed",
]  # fmt: skip


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else goes to :class:`torch.device`."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        # ValueError with a plain message: the callers' error handling turns it into one line
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU here (use cpu or auto)")
    return dev


class _Block(nn.Module):
    """Pre-activation residual block ``h + W2 drop(act(W1 [act(h), c]))``.

    The last layer starts at zero so that every block starts as the identity: deep stacks then train as stably as
    shallow ones.
    """

    def __init__(self, hidden: int, context_dim: int, dropout: float, activation: type[nn.Module]) -> None:
        super().__init__()
        self.act1 = activation()
        self.lin1 = nn.Linear(hidden + context_dim, hidden)
        self.act2 = activation()
        self.drop = nn.Dropout(dropout)
        self.lin2 = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.lin2.weight)
        nn.init.zeros_(self.lin2.bias)

    def forward(self, h: Tensor, context: Tensor | None) -> Tensor:
        z = self.act1(h)
        if context is not None:
            z = torch.cat([z, context], dim=-1)
        return h + self.lin2(self.drop(self.act2(self.lin1(z))))

    def forward_term(self, h: Tensor, offset: Tensor, shift: Tensor | None = None) -> Tensor:
        """:meth:`forward` with ``lin1``'s bias and context part given as ``offset`` plus ``shift``
        (``ResidualMLP.forward_terms``; no autograd)."""
        z = torch.addmm(offset, self.act1(h), self.lin1.weight[:, : h.shape[-1]].t())
        if shift is not None:
            z.add_(shift)
        # The residual sum as the GEMM's accumulator: one pass over (n, hidden) fewer than ``h + lin2(...)``.
        return torch.addmm(h, self.drop(self.act2(z)), self.lin2.weight.t()).add_(self.lin2.bias)


class ResidualMLP(nn.Module):
    """Dense residual network ``in_dim -> hidden -> n_blocks x block -> out_dim``.

    The context (``context_dim`` > 0) is concatenated to the input layer and to the input of every block, so that the
    conditioning reaches every depth. ``forward(..., return_hidden=True)`` also returns the hidden state after the
    input layer and after each block; :meth:`forward_mixed` evaluates the network with several contexts at once and
    mixes the hidden states layer by layer with given weights.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int = 64,
        n_blocks: int = 2,
        dropout: float = 0.0,
        context_dim: int = 0,
        activation: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.context_dim = int(in_dim), int(out_dim), int(context_dim)
        self.input = nn.Linear(self.in_dim + self.context_dim, hidden)
        self.blocks = nn.ModuleList(_Block(hidden, self.context_dim, dropout, activation) for _ in range(n_blocks))
        self.out_act = activation()
        self.output = nn.Linear(hidden, self.out_dim)

    def _check_context(self, context: Tensor | None) -> Tensor | None:
        if self.context_dim == 0:
            if context is not None:
                raise ValueError("this ResidualMLP has context_dim=0 but a context was given")
            return None
        if context is None:
            raise ValueError(f"this ResidualMLP needs a context of dimension {self.context_dim}")
        if context.shape[-1] != self.context_dim:
            raise ValueError(f"context has dimension {context.shape[-1]}, expected {self.context_dim}")
        return context

    def _input(self, x: Tensor, context: Tensor | None) -> Tensor:
        return self.input(x if context is None else torch.cat([x, context], dim=-1))

    def forward(
        self, x: Tensor, context: Tensor | None = None, *, return_hidden: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Output for ``x`` (n, in_dim) and ``context`` (n, context_dim); with ``return_hidden`` also the list of
        hidden states ``[after input layer, after block 1, ..., after block n_blocks]``."""
        context = self._check_context(context)
        h = self._input(x, context)
        hidden = [h]
        for block in self.blocks:
            h = block(h, context)
            hidden.append(h)
        out = self.output(self.out_act(h))
        return (out, hidden) if return_hidden else out

    def context_terms(self, part: Tensor, offset: int = 0, with_bias: bool = False) -> list[Tensor]:
        """What context columns ``offset ... offset + part.shape[-1]`` add to the pre-activations of the input layer
        and of each block's first layer (plus the layers' biases with ``with_bias``).

        The context enters every layer linearly, so the terms of a sum (or mix) of contexts are the sum (mix) of their
        terms: a caller whose context is fixed per event for many evaluations (an ODE's mass) computes them once and
        hands them to :meth:`forward_terms` with the parts that change (the time) as shifts, bias included once.
        """
        if self.context_dim == 0 or not 0 <= offset <= offset + part.shape[-1] <= self.context_dim:
            raise ValueError(f"context columns {offset}..{offset + part.shape[-1]} outside 0..{self.context_dim}")
        layers = [self.input] + [block.lin1 for block in self.blocks]
        start = [layer.in_features - self.context_dim + offset for layer in layers]
        return [F.linear(part, layer.weight[:, i : i + part.shape[-1]], layer.bias if with_bias else None)
                for layer, i in zip(layers, start)]

    @torch.no_grad()
    def forward_terms(self, x: Tensor, offsets: Sequence[Tensor], shifts: Sequence[Tensor] | None = None) -> Tensor:
        """``forward(x, context)`` given each layer's bias plus context terms (``context_terms(context,
        with_bias=True)``, one per layer, each (n, hidden) or broadcastable), plus optional ``shifts``, one per layer,
        added in place: a context part that changes between calls while ``offsets`` stay (an ODE's time). No
        autograd: this is for sampling."""
        n_layers = len(self.blocks) + 1
        shifts = list(shifts) if shifts is not None else [None] * n_layers
        if len(offsets) != n_layers or len(shifts) != n_layers:
            raise ValueError(f"forward_terms needs {n_layers} offsets and shifts, got {len(offsets)}, {len(shifts)}")
        h = torch.addmm(offsets[0].expand(len(x), -1), x, self.input.weight[:, : self.in_dim].t())
        if shifts[0] is not None:
            h.add_(shifts[0])
        for block, offset, shift in zip(self.blocks, offsets[1:], shifts[1:]):
            h = block.forward_term(h, offset, shift)
        return self.output(self.out_act(h))

    def forward_mixed(self, x: Tensor, contexts: Sequence[Tensor], weights: Sequence[Tensor | float]) -> Tensor:
        """Layer-wise interpolation: every layer is evaluated once per context on the *mixed* hidden state and the
        results are combined as ``sum_i weights[i] * layer(h, contexts[i])``. Weights are scalars or (n, 1) tensors
        (normally summing to one)."""
        if len(contexts) != len(weights) or not contexts:
            raise ValueError("forward_mixed needs as many weights as contexts (at least one)")
        contexts = [self._check_context(c) for c in contexts]
        h = sum(w * self._input(x, c) for c, w in zip(contexts, weights))
        for block in self.blocks:
            h = sum(w * block(h, c) for c, w in zip(contexts, weights))
        return self.output(self.out_act(h))


class FrequencyEmbedding(nn.Module):
    """Maps a scalar ``s`` in [0, 1] to ``(sin w_k s, cos w_k s)`` for ``k < n_freqs`` (output ``2 n_freqs``):
    ``w_k = 2^k pi`` (``spacing="octave"``) or ``w_k = (k + 1) pi`` (``spacing="linear"``)."""

    SPACINGS = ("octave", "linear")

    def __init__(self, n_freqs: int, spacing: str = "octave") -> None:
        super().__init__()
        if n_freqs < 1:
            raise ValueError("FrequencyEmbedding needs n_freqs >= 1")
        if spacing not in self.SPACINGS:
            raise ValueError(f"FrequencyEmbedding spacing must be one of {self.SPACINGS}, got {spacing!r}")
        self.n_freqs, self.spacing = int(n_freqs), spacing
        k = torch.arange(self.n_freqs, dtype=torch.float32)
        freqs = math.pi * (2.0**k if spacing == "octave" else k + 1.0)
        self.register_buffer("freqs", freqs, persistent=False)

    @property
    def out_dim(self) -> int:
        return 2 * self.n_freqs

    def forward(self, s: Tensor) -> Tensor:
        """``s`` of shape (n,) or (n, 1) -> (n, 2 n_freqs)."""
        if s.ndim == 2 and s.shape[-1] == 1:
            s = s[:, 0]
        arg = s[:, None].to(self.freqs.dtype) * self.freqs
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


def _state_copy(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _fork_rng(device: torch.device):
    # Validation losses of stochastic objectives (diffusion noise, flow-matching times) use a fixed random stream, so
    # that epochs are compared on the same draws, and the training stream is left untouched.
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def train_loop(
    model: nn.Module,
    loss_fn: Callable[[tuple[Tensor, ...]], Tensor],
    train: tuple[Tensor, ...],
    val: tuple[Tensor, ...] | None = None,
    *,
    epochs: int = 50,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    patience: int | None = 10,
    device: str | None = None,
    seed: int = 0,
    progress: bool = False,
    keep_best: int = 1,
    grad_clip: float | None = None,
    scheduler: str | None = None,
) -> dict[str, Any]:
    """Train ``model`` with AdamW on mini-batches of the tensors in ``train``.

    ``loss_fn(batch)`` gets one batch (a tuple of tensors already on the device, same order as ``train``) and returns
    a scalar loss. Model selection and early stopping (``patience`` epochs without improvement; ``None`` = never stop)
    use the validation loss, or the training loss when ``val`` is ``None``. The best weights are restored at the end.
    ``scheduler="cosine"`` anneals the learning rate to zero over ``epochs``; ``grad_clip`` clips the gradient norm.
    Torch's global generator is seeded with ``seed`` (initial shuffles, dropout, noise drawn inside ``loss_fn``).

    Returns ``{"train": [...], "val": [...], "best_epoch": int, "best_states": [state dicts of the keep_best best
    epochs, best first, on CPU], "best_losses": [...], "seconds": float}``.
    """
    if not train or len(train[0]) == 0:
        raise ValueError("train_loop needs a non-empty training set")
    n = len(train[0])
    if any(len(t) != n for t in train):
        raise ValueError("all training tensors must have the same length")
    dev = pick_device(device)
    torch.manual_seed(seed)
    model.to(dev)
    train = tuple(t.to(dev) for t in train)
    val = tuple(t.to(dev) for t in val) if val is not None and len(val[0]) > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = None
    if scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    elif scheduler is not None:
        raise ValueError(f"unknown scheduler {scheduler!r} (use None or 'cosine')")
    gen = torch.Generator(device="cpu").manual_seed(seed)

    history: dict[str, Any] = {"train": [], "val": []}
    best: list[tuple[float, int, dict[str, Tensor]]] = []
    best_loss, best_epoch = math.inf, -1
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="training", unit="epoch")
    try:
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(n, generator=gen).to(dev)
            total = 0.0
            for i in range(0, n, batch_size):
                idx = perm[i : i + batch_size]
                loss = loss_fn(tuple(t[idx] for t in train))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite training loss at epoch {epoch}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                opt.step()
                total += float(loss.detach()) * len(idx)
            if sched is not None:
                sched.step()
            history["train"].append(total / n)
            if val is not None:
                history["val"].append(_evaluate(model, loss_fn, val, batch_size * 4, seed, dev))
                score = history["val"][-1]
            else:
                score = history["train"][-1]
            if len(best) < keep_best or score < best[-1][0]:
                best.append((score, epoch, _state_copy(model)))
                best.sort(key=lambda item: item[0])
                del best[keep_best:]
            if score < best_loss:
                best_loss, best_epoch = score, epoch
            if bar is not None:
                bar.update(1)
                bar.set_postfix(train=f"{history['train'][-1]:.4g}", val=f"{score:.4g}", best=best_epoch)
            if patience is not None and epoch - best_epoch >= patience:
                break
    finally:
        if bar is not None:
            bar.close()
    model.load_state_dict(best[0][2])
    history["best_epoch"] = best_epoch
    history["best_states"] = [state for _, _, state in best]
    history["best_losses"] = [loss for loss, _, _ in best]
    history["seconds"] = time.perf_counter() - start
    return history


@torch.no_grad()
def _evaluate(
    model: nn.Module, loss_fn: Callable[[tuple[Tensor, ...]], Tensor], data: tuple[Tensor, ...], batch_size: int,
    seed: int, device: torch.device,
) -> float:
    model.eval()
    n = len(data[0])
    total = 0.0
    with _fork_rng(device):
        torch.manual_seed(seed + 1)
        for i in range(0, n, batch_size):
            batch = tuple(t[i : i + batch_size] for t in data)
            total += float(loss_fn(batch)) * len(batch[0])
    return total / n


@torch.no_grad()
def batched_apply(fn: Callable[..., Tensor], *tensors: Tensor, batch_size: int = 65536) -> Tensor:
    """Apply ``fn`` to row batches of ``tensors`` and concatenate (for evaluating big arrays without big memory)."""
    n = len(tensors[0])
    return torch.cat([fn(*(t[i : i + batch_size] for t in tensors)) for i in range(0, n, batch_size)])


def clone_module(model: nn.Module, state: dict[str, Tensor] | None = None) -> nn.Module:
    """A deep copy of ``model``, optionally with ``state`` loaded (for ensembles of best-epoch weights)."""
    out = copy.deepcopy(model)
    if state is not None:
        out.load_state_dict(state)
    return out


def sub_seed(seed: int, *keys: int) -> int:
    """A seed for the part ``keys`` of a run with ``seed`` (independent streams for its sub-models)."""
    return int(np.random.SeedSequence([int(seed), *keys]).generate_state(1)[0] % (2**31 - 1))


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Run the block with torch's global generators seeded to ``seed``, restoring their state afterwards (so that
    sampling is reproducible and does not disturb the caller's random stream)."""
    dev = pick_device(device)
    with _fork_rng(dev):
        torch.manual_seed(seed)
        yield
