"""Lesson 08 (and 09-11): training.

``train_step`` is one training step on one batch: forward pass and loss, back-propagation,
gradient clipping, the optimiser's and the learning-rate schedule's step (lesson 08 writes it).
``train`` is the loop every training lesson uses: it draws batches and runs ``train_step`` on each
(with the attention layers on their fused kernel: training draws no attention pictures), shows a
progress bar, evaluates, and records a :class:`History`.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ._deprecated import moved
from .multi_head_attention import fused_attention
from .runtime import SMOKE_STEPS, training_steps  # noqa: F401 - SMOKE_STEPS: imported from here too
from .validation import (check_device, check_flag, check_int, check_module, check_number, check_positive_int,
                         check_sequence, check_tensor, out_of_range_targets)


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
    device = check_device("device", device)
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


def train_step(model: nn.Module, batch: Any, loss_fn: Callable[[nn.Module, Any], torch.Tensor],
               optimizer: torch.optim.Optimizer, scheduler: Any | None = None, clip_norm: float | None = 1.0) -> float:
    """One training step on one batch; returns the batch's loss (before the update) as a float.

    Args:
        model: the model (its parameters must be in ``optimizer``).
        batch: one batch, on the model's device.
        loss_fn: ``loss_fn(model, batch) -> scalar loss`` (the forward pass and the loss).
        optimizer: e.g. ``torch.optim.AdamW(model.parameters(), lr=...)``.
        scheduler: a learning-rate scheduler, stepped after the optimiser (``None``: none).
        clip_norm: clip the gradients' global norm to this value (``None``: no clipping).
    """
    model.train()                                        # dropout on (after an evaluation it was off)
    optimizer.zero_grad(set_to_none=True)                # backward adds to .grad: forget the last step's
    loss = loss_fn(model, batch)                         # forward pass and loss
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise TypeError(f"loss_fn must return a scalar loss tensor, got {_what(loss)}")
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the loss became {loss.item()}: lower the learning rate")
    loss.backward()                                      # d loss / d parameter into every .grad
    if clip_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)   # the gradients' global norm <= clip_norm
    optimizer.step()                                     # the update, with the clipped gradients
    if scheduler is not None:
        scheduler.step()                                 # the learning rate of the *next* step
    return loss.item()                                   # a float: keeps no graph alive


def train(model: nn.Module, batches: Iterable | Callable[[int], Any],
          loss_fn: Callable[[nn.Module, Any], torch.Tensor], *, steps: int,
          optimizer: torch.optim.Optimizer, scheduler: Any | None = None, clip_norm: float | None = 1.0,
          evaluate: Callable[[nn.Module], dict[str, float]] | None = None, eval_every: int = 0,
          progress: bool = True, desc: str = "training", device: torch.device | str | None = None) -> History:
    """Train ``model`` for ``steps`` optimiser steps and return its :class:`History`: the loop
    ``for step ...: history.loss.append(train_step(model, batch, loss_fn, optimizer, scheduler, clip_norm))``
    plus the bookkeeping (batches drawn and moved to the device, a progress bar, evaluations, history).

    Args:
        model: the model (its parameters must be in ``optimizer``).
        batches: an iterable of batches (cycled when exhausted) or a function ``step -> batch``.
        loss_fn: ``loss_fn(model, batch) -> scalar loss``.
        steps: number of optimiser steps (``SMOKE_STEPS`` in smoke-test mode, see ``runtime.training_steps``).
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
    check_module("model", model)
    check_positive_int("steps", steps)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a function loss_fn(model, batch) -> loss, got {type(loss_fn).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, e.g. torch.optim.AdamW(model.parameters(), "
                        f"lr=1e-3), got {type(optimizer).__name__}")
    if clip_norm is not None:
        check_number("clip_norm", clip_norm, low=0.0, low_open=True, hint="or None for no clipping")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate must be a function evaluate(model) -> dict, or None, got {type(evaluate).__name__}")
    check_int("eval_every", eval_every, minimum=0, hint="0: evaluate after the last step only")
    check_flag("progress", progress)
    if isinstance(batches, torch.Tensor) or not (callable(batches) or hasattr(batches, "__iter__")):
        raise TypeError(f"batches must be an iterable of batches or a function step -> batch, "
                        f"got {type(batches).__name__}")
    steps = training_steps(steps)
    device = next(model.parameters()).device if device is None else check_device("device", device)
    if callable(batches):
        draw = batches
    else:
        iterator = itertools.cycle(batches) if not hasattr(batches, "__next__") else batches

        def draw(step: int):
            try:
                return next(iterator)
            except StopIteration:
                raise ValueError(f"batches ran out before step {step}: pass a non-empty list (it is cycled), "
                                 f"an endless iterator, or a function step -> batch") from None
    history = History()
    bar = _progress_bar(steps, desc) if progress else None
    start = time.perf_counter()
    for step in range(1, steps + 1):
        batch = to_device(draw(step), device)
        history.step.append(step)
        history.lr.append(optimizer.param_groups[0]["lr"])          # the rate this step uses
        try:
            with fused_attention(model):                 # no attention weights to keep: the fast kernel
                history.loss.append(train_step(model, batch, loss_fn, optimizer, scheduler, clip_norm))
        except (TypeError, FloatingPointError) as e:
            if type(e) in (TypeError, FloatingPointError):
                raise type(e)(f"{e} at step {step}") from e
            raise
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


def _check_batch(batch) -> None:
    if not all(hasattr(batch, name) for name in ("src", "tgt_in", "tgt_out")):
        raise TypeError(f"a batch must have .src, .tgt_in and .tgt_out (a transformer_lib.data.Batch, as "
                        f"task.batches(...) gives), got {type(batch).__name__}")


def _what(value) -> str:
    return f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__


def _progress_bar(total: int, desc: str):
    from tqdm.auto import tqdm  # imported here: tqdm is only needed when training
    return tqdm(total=total, desc=desc, mininterval=0.5)


# -- lesson 08: the loss, the learning-rate schedule, teacher forcing, saving ------------------

def label_smoothed_cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.1,
                                 pad_id: int | None = 0) -> torch.Tensor:
    """Cross-entropy against a smoothed target distribution, averaged over non-padding tokens.

    The target distribution puts ``1 - smoothing`` on the correct token and spreads
    ``smoothing`` uniformly over all ``V`` classes (Szegedy et al. 2016, and PyTorch's
    ``F.cross_entropy(..., label_smoothing=smoothing, ignore_index=pad_id)``, which this equals)::

        q = (1 - smoothing) * one_hot(target) + smoothing / V
        loss = mean over tokens with target != pad_id of  -sum_v q_v log p_v

    Args:
        logits: ``(..., V)`` unnormalised scores.
        target: ``(...)`` correct ids (same leading shape as ``logits``).
        smoothing: the probability mass moved away from the correct token, in [0, 1).
        pad_id: target id to ignore (``None``: ignore nothing).

    Returns:
        a scalar tensor; ``0`` (never NaN) when every target is padding. Computed with
        ``log_softmax``, so it stays finite for very large logits.
    """
    check_tensor("logits", logits, floating=True)
    check_tensor("target", target, floating=False)
    if logits.dim() == 0 or logits.shape[:-1] != target.shape:
        raise ValueError(f"logits (..., V) and target (...) must agree, got logits {tuple(logits.shape)} "
                         f"and target {tuple(target.shape)}")
    check_number("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
    if pad_id is not None:
        check_int("pad_id", pad_id, hint="or None to ignore no target")
    V = logits.shape[-1]
    log_probs = torch.log_softmax(logits.float(), dim=-1).reshape(-1, V)       # (..., V) -> (N, V)
    target = target.reshape(-1).long()                                          # (...) -> (N,)
    keep = torch.ones_like(target, dtype=torch.bool) if pad_id is None else target != pad_id
    safe_target = target.masked_fill(~keep, 0)
    try:
        nll = -log_probs.gather(-1, safe_target[:, None]).squeeze(-1)           # (N,): -log p(correct)
    except RuntimeError as e:
        raise out_of_range_targets(e, "target", V) from None
    uniform = -log_probs.mean(dim=-1)                                           # (N,): -(1/V) sum_v log p_v
    per_token = (1 - smoothing) * nll + smoothing * uniform                     # (N,)
    return (per_token * keep).sum() / keep.sum().clamp(min=1)


def noam_lr(step: int, d_model: int, warmup_steps: int = 4000, factor: float = 1.0) -> float:
    """The learning rate of "Attention Is All You Need" (section 5.3) at ``step`` (from 1)::

        lr = factor * d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)

    It grows linearly for ``warmup_steps`` steps, peaks at ``factor / sqrt(d_model * warmup_steps)``,
    then decays like ``1 / sqrt(step)``. The paper uses ``d_model=512, warmup_steps=4000, factor=1``.
    """
    check_positive_int("step", step)
    check_positive_int("d_model", d_model)
    check_positive_int("warmup_steps", warmup_steps)
    check_number("factor", factor, low=0.0, low_open=True)
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


def warmup_linear_decay_lr(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Linear warm-up to ``peak_lr`` over ``warmup_steps`` steps, then a linear decay that reaches
    almost zero at ``total_steps`` (the schedule of BERT and of most short training runs)::

        lr = peak_lr * step / warmup_steps                                      step <= warmup_steps
        lr = peak_lr * (total_steps - step + 1) / (total_steps - warmup_steps + 1)   afterwards

    Like :func:`noam_lr` it warms up; unlike it, it knows when training ends and anneals to zero
    there, which removes the last noisy updates (and with them the last errors) of a short run.
    """
    check_positive_int("step", step)
    check_positive_int("total_steps", total_steps)
    check_positive_int("warmup_steps", warmup_steps)
    if warmup_steps >= total_steps:
        raise ValueError(f"warmup_steps={warmup_steps} must be smaller than total_steps={total_steps}")
    check_number("peak_lr", peak_lr, low=0.0, low_open=True)
    if step <= warmup_steps:
        return peak_lr * step / warmup_steps
    return peak_lr * max(total_steps - step + 1, 0) / (total_steps - warmup_steps + 1)


def lr_scheduler(optimizer: torch.optim.Optimizer, lr_at: Callable[[int], float]) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that sets the learning rate to ``lr_at(step)`` before optimiser step
    ``step`` = 1, 2, ... (it sets the optimiser's base rate to 1, because ``LambdaLR``
    multiplies the base rate by the function's value)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not callable(lr_at):
        raise TypeError(f"lr_at must be a function step -> learning rate, got {type(lr_at).__name__}")
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_at(i + 1))


def noam_scheduler(optimizer: torch.optim.Optimizer, d_model: int, warmup_steps: int = 4000,
                   factor: float = 1.0, lr_fn: Callable[..., float] | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`lr_scheduler` with ``lr_fn(step, d_model, warmup_steps, factor)`` (default :func:`noam_lr`)."""
    fn = noam_lr if lr_fn is None else lr_fn
    fn(1, d_model, warmup_steps, factor)                    # a bad argument fails here, not at the first step
    return lr_scheduler(optimizer, lambda step: fn(step, d_model, warmup_steps, factor))


def shift_right(target: torch.Tensor, bos_id: int, pad_id: int = 0) -> torch.Tensor:
    """Teacher forcing's decoder input: ``<bos>`` followed by the target without its last token.

    ``target (B, T)`` (ending in ``<eos>`` and padding) -> ``(B, T)``; the decoder reads
    ``shift_right(y)[:, t]`` = ``y[:, t-1]`` and must predict ``y[:, t]``.
    """
    check_tensor("target", target, ndim=2, floating=False)
    check_int("bos_id", bos_id, minimum=0)
    check_int("pad_id", pad_id, minimum=0)
    start = torch.full_like(target[:, :1], bos_id)                               # (B, 1)
    shifted = torch.cat([start, target[:, :-1]], dim=1)                          # (B, 1) + (B, T-1) -> (B, T)
    # once the target is padding, the input is padding too (the <eos> itself is never an input)
    return shifted.masked_fill(target == pad_id, pad_id)


def seq2seq_loss(smoothing: float = 0.1, loss: Callable[..., torch.Tensor] | None = None) -> Callable:
    """``loss_fn(model, batch)`` for :func:`train`: teacher forcing on a batch with ``src``,
    ``tgt_in`` and ``tgt_out`` (see :class:`transformer_lib.data.Batch`), scored with ``loss``
    (default :func:`label_smoothed_cross_entropy`)."""
    check_number("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
    loss = label_smoothed_cross_entropy if loss is None else loss
    if not callable(loss):
        raise TypeError(f"loss must be a function like label_smoothed_cross_entropy, got {type(loss).__name__}")

    def loss_fn(model: nn.Module, batch) -> torch.Tensor:
        _check_batch(batch)
        logits = model(batch.src, batch.tgt_in)                                  # (B, T, V)
        return loss(logits, batch.tgt_out, smoothing=smoothing, pad_id=model.config.pad_id)
    return loss_fn


@torch.no_grad()
def token_accuracy(model: nn.Module, batches: Iterable) -> float:
    """Fraction of non-padding target tokens predicted right with teacher forcing (cheap: one
    forward pass per batch, no decoding)."""
    check_module("model", model)
    was_training = model.training
    model.eval()
    right = total = 0
    for batch in check_sequence("batches", batches):
        _check_batch(batch)
        batch = to_device(batch, next(model.parameters()).device)
        pred = model(batch.src, batch.tgt_in).argmax(dim=-1)                     # (B, T)
        keep = batch.tgt_out != model.config.pad_id
        right += int(((pred == batch.tgt_out) & keep).sum())
        total += int(keep.sum())
    model.train(was_training)
    return right / max(total, 1)


def exact_match(predictions: Iterable[str], references: Iterable[str]) -> float:
    """Fraction of predictions equal to their reference, character for character."""
    predictions = check_sequence("predictions", predictions, what="texts")
    references = check_sequence("references", references, what="texts")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    return sum(p == r for p, r in zip(predictions, references)) / max(len(references), 1)


__getattr__ = moved(__name__, {"save_model": "transformer_lib.checkpoint:save_model",
                               "load_model": "transformer_lib.checkpoint:load_model"})
