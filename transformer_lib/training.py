"""Lesson 08 (and 09-11): training.

``train`` is the one loop every training lesson uses: it draws batches, computes a loss with
a function you pass, back-propagates, clips the gradient norm, steps the optimiser and the
learning-rate schedule, shows a progress bar, and records a :class:`History`.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .utils import check_positive_int, smoke_test_mode

#: Steps a training loop runs when TRANSFORMER_COURSE_SMOKE=1 (the exercise-notebook tests).
SMOKE_STEPS = 3


@dataclass
class History:
    """What happened during training: loss and learning rate per step, evaluations, time."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def metric(self, name: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of an evaluation metric."""
        rows = [e for e in self.evals if name in e]
        return [int(e["step"]) for e in rows], [e[name] for e in rows]


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor in a batch (a tensor, tuple, list, dict or dataclass of them) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)) and not hasattr(batch, "_fields"):
        return type(batch)(to_device(v, device) for v in batch)
    if hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if hasattr(batch, "__dataclass_fields__"):
        return type(batch)(**{k: to_device(getattr(batch, k), device) for k in batch.__dataclass_fields__})
    return batch


def train(model: nn.Module, batches: Iterable | Callable[[int], Any],
          loss_fn: Callable[[nn.Module, Any], torch.Tensor], *, steps: int,
          optimizer: torch.optim.Optimizer, scheduler: Any | None = None, clip_norm: float | None = 1.0,
          evaluate: Callable[[nn.Module], dict[str, float]] | None = None, eval_every: int = 0,
          progress: bool = True, desc: str = "training", device: torch.device | str | None = None) -> History:
    """Train ``model`` for ``steps`` optimiser steps and return its :class:`History`.

    Args:
        model: the model (its parameters must be in ``optimizer``).
        batches: an iterable of batches (cycled when exhausted) or a function ``step -> batch``.
        loss_fn: ``loss_fn(model, batch) -> scalar loss``.
        steps: number of optimiser steps (3 in smoke-test mode, see ``utils.smoke_test_mode``).
        optimizer: e.g. ``torch.optim.AdamW(model.parameters(), lr=...)``.
        scheduler: a learning-rate scheduler stepped after every optimiser step.
        clip_norm: clip the gradients' global norm to this value (``None``: no clipping).
        evaluate: ``evaluate(model) -> {"name": value}``, called in eval mode without gradients
            every ``eval_every`` steps and after the last step.
        progress: show a tqdm progress bar (a widget in Jupyter, text in a terminal).
        desc: the progress bar's label.
        device: where to train; default: where the model's parameters are.

    Returns:
        a :class:`History`; ``history.seconds`` is the wall-clock training time, evaluations included.
    """
    check_positive_int("steps", steps)
    if smoke_test_mode():
        steps = min(steps, SMOKE_STEPS)
    if device is None:
        device = next(model.parameters()).device
    if callable(batches):
        draw = batches
    else:
        iterator = itertools.cycle(batches) if not hasattr(batches, "__next__") else batches
        draw = lambda step: next(iterator)  # noqa: E731
    history = History()
    bar = _progress_bar(steps, desc) if progress else None
    start = time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        batch = to_device(draw(step), device)
        loss = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {step}: lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        history.step.append(step)
        history.loss.append(loss.item())
        history.lr.append(optimizer.param_groups[0]["lr"])
        if scheduler is not None:
            scheduler.step()
        if evaluate is not None and ((eval_every and step % eval_every == 0) or step == steps):
            model.eval()
            with torch.no_grad():
                history.evals.append({"step": step, **evaluate(model)})
            model.train()
        if bar is not None:
            bar.update(1)
            if step % 10 == 0 or step == steps:
                bar.set_postfix(loss=f"{history.loss[-1]:.3f}", refresh=False)
    history.seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    model.eval()
    return history


def _progress_bar(total: int, desc: str):
    from tqdm.auto import tqdm  # imported here: tqdm is only needed when training
    return tqdm(total=total, desc=desc, mininterval=0.5)
