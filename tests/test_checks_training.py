"""The lesson 08 checks accept right answers and name each typical mistake."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transformer_lib.checks import (CheckFailed, check_greedy_decode, check_label_smoothed_cross_entropy,
                                    check_noam_lr, check_train_step)
from transformer_lib.decoding import greedy_decode
from transformer_lib.masks import padding_mask
from transformer_lib.training import label_smoothed_cross_entropy, noam_lr, train_step


def passes(check, fn, capsys):
    assert check(fn) is fn
    assert "is correct" in capsys.readouterr().out


def rejects(check, fn, *words):
    with pytest.raises(CheckFailed) as info:
        check(fn)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


# -- the loss ----------------------------------------------------------------------------------

def torch_loss(logits, target, smoothing=0.1, pad_id=0):
    """Another correct version: PyTorch's own."""
    V = logits.shape[-1]
    if (target != pad_id).sum() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, V), target.reshape(-1), label_smoothing=smoothing, ignore_index=pad_id)


def smoothed(logits, target, smoothing=0.1, pad_id=0, others=False, skip_pad=False, keep_pad_rows=False,
             mean_all=False, use_sum=False, naive_log=False, no_smoothing=False):
    V = logits.shape[-1]
    log_p = (torch.softmax(logits, -1).log() if naive_log else torch.log_softmax(logits, -1)).reshape(-1, V)
    t = target.reshape(-1)
    one_hot = F.one_hot(t, V).float()
    u = torch.ones(len(t), V)
    if skip_pad:
        u[:, pad_id] = 0
    if others:
        u = u * (1 - one_hot)
    u = u / u.sum(-1, keepdim=True)
    eps = 0.0 if no_smoothing else smoothing
    per_token = -(((1 - eps) * one_hot + eps * u) * log_p).sum(-1)
    keep = torch.ones_like(t, dtype=torch.bool) if keep_pad_rows else t != pad_id
    total = (per_token * keep).sum()
    if use_sum:
        return total
    return total / (len(t) if mean_all else keep.sum().clamp(min=1))


def test_loss_check_accepts_right_versions(capsys):
    passes(check_label_smoothed_cross_entropy, label_smoothed_cross_entropy, capsys)
    passes(check_label_smoothed_cross_entropy, torch_loss, capsys)
    passes(check_label_smoothed_cross_entropy, smoothed, capsys)
    passes(check_label_smoothed_cross_entropy, lambda *a, **k: smoothed(*a, **k).double(), capsys)   # float64


@pytest.mark.parametrize("kwargs, words", [
    (dict(others=True), ["V-1 wrong classes"]),
    (dict(skip_pad=True), ["skips the <pad> class"]),
    (dict(others=True, skip_pad=True), ["V-2 classes"]),
    (dict(no_smoothing=True), ["no smoothing"]),
    (dict(keep_pad_rows=True), ["padding positions are not ignored"]),
    (dict(mean_all=True), ["padding included"]),
    (dict(use_sum=True), ["is a sum over tokens"]),
    (dict(naive_log=True), ["log_softmax"]),
])
def test_loss_check_names_each_mistake(kwargs, words):
    rejects(check_label_smoothed_cross_entropy, lambda *a, **k: smoothed(*a, **k, **kwargs), *words)


def test_loss_check_rejects_nan_on_an_all_padding_batch_and_a_detached_loss():
    def nan_when_empty(logits, target, smoothing=0.1, pad_id=0):
        V = logits.shape[-1]
        return F.cross_entropy(logits.reshape(-1, V), target.reshape(-1), label_smoothing=smoothing, ignore_index=pad_id)
    rejects(check_label_smoothed_cross_entropy, nan_when_empty, "only padding", "NaN")

    def detached(*args, **kwargs):
        return label_smoothed_cross_entropy(*args, **kwargs).detach()
    rejects(check_label_smoothed_cross_entropy, detached, "gradient")

    def python_float(*args, **kwargs):
        return label_smoothed_cross_entropy(*args, **kwargs).item()
    rejects(check_label_smoothed_cross_entropy, python_float, "scalar tensor")


def test_loss_check_rejects_an_all_padding_branch_without_a_gradient():
    def zero_without_gradient(logits, target, smoothing=0.1, pad_id=0):
        if (target != pad_id).sum() == 0:
            return torch.tensor(0.0)                          # cuts the loss off from the logits
        return label_smoothed_cross_entropy(logits, target, smoothing, pad_id)
    rejects(check_label_smoothed_cross_entropy, zero_without_gradient, "only padding", "no gradient",
            "torch.tensor(0.0)")


def test_loss_check_reports_errors_with_the_case():
    def crashes(logits, target, smoothing=0.1, pad_id=0):
        return logits.view(-1) @ target
    rejects(check_label_smoothed_cross_entropy, crashes, "your function raised", "logits (2, 5, 7)")


# -- the schedule ------------------------------------------------------------------------------

def test_schedule_check_accepts_right_versions(capsys):
    passes(check_noam_lr, noam_lr, capsys)

    def other(step, d_model, warmup_steps=4000, factor=1.0):
        if step < warmup_steps:
            return factor * step / (warmup_steps ** 1.5 * d_model ** 0.5)
        return factor / (step * d_model) ** 0.5
    passes(check_noam_lr, other, capsys)

    def tensor_valued(step, d_model, warmup_steps=4000, factor=1.0):
        s = torch.tensor(float(step), dtype=torch.float64)
        return factor * d_model ** -0.5 * torch.minimum(s ** -0.5, s * warmup_steps ** -1.5)
    passes(check_noam_lr, tensor_valued, capsys)

    def numpy_float32(step, d_model, warmup_steps=4000, factor=1.0):
        return np.float32(noam_lr(step, d_model, warmup_steps, factor))
    passes(check_noam_lr, numpy_float32, capsys)


@pytest.mark.parametrize("fn, words", [
    (lambda s, d, w=4000, f=1.0: f * d ** -0.5 * s ** -0.5, ["no warm-up"]),
    (lambda s, d, w=4000, f=1.0: f * d ** -0.5 * s * w ** -1.5, ["warm-up is all there is"]),
    (lambda s, d, w=4000, f=1.0: f * d ** -0.5 * max(s ** -0.5, s * w ** -1.5), ["max instead of min"]),
    (lambda s, d, w=4000, f=1.0: f * min(s ** -0.5, s * w ** -1.5), ["d_model factor is missing"]),
    (lambda s, d, w=4000, f=1.0: f / d * min(s ** -0.5, s * w ** -1.5), ["d_model enters with the wrong power"]),
    (lambda s, d, w=4000, f=1.0: f * d ** -0.5 * min(s ** -0.5, s * w ** -0.5), ["warm-up has the wrong power"]),
    (lambda s, d, w=4000, f=1.0: f * d ** -0.5 * min(1 / s, s * w ** -1.5), ["decay has the wrong power"]),
    (lambda s, d, w=4000, f=1.0: d ** -0.5 * min(s ** -0.5, s * w ** -1.5), ["factor is ignored"]),
    (lambda s, d, w=4000, f=1.0: f * d ** -0.5 * min(s ** -0.5, s * w ** -1.5) * 1.01,
     ["the learning rate is wrong at step 1 (d_model=512, warmup_steps=4000, factor=1.0) it gives"]),
    (lambda s, d, w=4000, f=1.0: noam_lr(s, d, w, f) if s < 4000 else 0.0,
     ["at step 4000 (d_model=512, warmup_steps=4000, factor=1.0) it gives 0"]),
    (lambda s, d, w=4000, f=1.0: None, ["should be a number, got None"]),
    (lambda s, d, w=4000, f=1.0: float("nan"), ["should be a finite number"]),
])
def test_schedule_check_names_each_mistake(fn, words):
    rejects(check_noam_lr, fn, *words)


# -- greedy decoding ---------------------------------------------------------------------------

def start(model, src):
    """Encode once: (src_mask, memory)."""
    src_mask = padding_mask(src, model.config.pad_id)
    return src_mask, model.encode(src, src_mask)


def step_logits(model, memory, src_mask, ys):
    """Logits (B, T, V) of every position of the decoder input ys."""
    return model.generator(model.decode(ys, memory, memory_mask=src_mask))


def naive_greedy(model, src, max_len, bos_id=2, eos_id=3):
    """Another correct version: no cache, the whole prefix every step, runs to max_len."""
    pad = model.config.pad_id
    src_mask, memory = start(model, src)
    ys = torch.full((src.shape[0], 1), bos_id)
    done = torch.zeros(src.shape[0], dtype=torch.bool)
    for _ in range(max_len):
        nxt = step_logits(model, memory, src_mask, ys)[:, -1].argmax(-1)
        nxt[done] = pad
        done |= nxt == eos_id
        ys = torch.cat([ys, nxt[:, None]], dim=1)
    return ys[:, 1:]


def row_by_row_greedy(model, src, max_len, bos_id=2, eos_id=3):
    """Another correct version: one sequence at a time (each source encoded once), padded at the end."""
    rows = []
    for one in src.split(1):
        src_mask, memory = start(model, one)
        ys = torch.full((1, 1), bos_id)
        for _ in range(max_len):
            nxt = step_logits(model, memory, src_mask, ys)[:, -1].argmax(-1)
            ys = torch.cat([ys, nxt[:, None]], dim=1)
            if nxt.item() == eos_id:
                break
        rows.append(ys[0, 1:])
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=model.config.pad_id)


def test_greedy_check_accepts_right_versions(capsys):
    passes(check_greedy_decode, greedy_decode, capsys)
    passes(check_greedy_decode, naive_greedy, capsys)
    passes(check_greedy_decode, row_by_row_greedy, capsys)


def encoder_every_step(model, src, max_len, bos_id=2, eos_id=3):
    """Right tokens, but model(src, ys) runs the encoder again at every step."""
    ys = torch.full((src.shape[0], 1), bos_id)
    for _ in range(max_len):
        nxt = model(src, ys)[:, -1].argmax(-1)
        ended = (ys == eos_id).any(dim=1)
        nxt = torch.where(ended, torch.zeros_like(nxt), nxt)
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        if ((ys == eos_id).any(dim=1)).all():
            break
    return ys[:, 1:]


def no_eos_stop(model, src, max_len, bos_id=2, eos_id=3):
    src_mask, memory = start(model, src)
    ys = torch.full((src.shape[0], 1), bos_id)
    for _ in range(max_len):
        ys = torch.cat([ys, step_logits(model, memory, src_mask, ys)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ys[:, 1:]


def greedy_reading(position, feed_back=True):
    """Greedy decoding that takes the token from logits[:, position]; without feed_back, ys never grows."""
    def fn(model, src, max_len, bos_id=2, eos_id=3):
        src_mask, memory = start(model, src)
        ys = torch.full((src.shape[0], 1), bos_id)
        out = []
        for _ in range(max_len):
            nxt = step_logits(model, memory, src_mask, ys)[:, position].argmax(-1)
            out.append(nxt)
            if feed_back:
                ys = torch.cat([ys, nxt[:, None]], dim=1)
            if (torch.stack(out, 1) == eos_id).any(dim=1).all():
                break
        out = torch.stack(out, 1)
        ended = (out == eos_id).cumsum(1) - (out == eos_id).long() > 0
        return out.masked_fill(ended, 0)
    return fn


def wrong_axis(model, src, max_len, bos_id=2, eos_id=3):
    src_mask, memory = start(model, src)
    ys = torch.full((src.shape[0], 1), bos_id)
    for _ in range(max_len):
        ys = torch.cat([ys, step_logits(model, memory, src_mask, ys)[:, -1].argmax(dim=0)[:, None]], dim=1)
    return ys[:, 1:]


def wrong_axis_same_shape(model, src, max_len, bos_id=2, eos_id=3):
    src_mask, memory = start(model, src)
    ys = torch.full((src.shape[0], 1), bos_id)
    for _ in range(max_len):
        nxt = step_logits(model, memory, src_mask, ys).argmax(dim=1)[:, -1]   # over positions, then the last id
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        if (ys == eos_id).any(dim=1).all():
            break
    return ys[:, 1:]


def keeps_bos(model, src, max_len, bos_id=2, eos_id=3):
    return torch.cat([torch.full((src.shape[0], 1), bos_id), greedy_decode(model, src, max_len - 1)], dim=1)


def too_long(model, src, max_len, bos_id=2, eos_id=3):
    return naive_greedy(model, src, max_len + 1)                # one step too many


@pytest.mark.parametrize("fn, words", [
    (encoder_every_step, ["the encoder ran 9 times (45 source rows for 5 sources)", "encode it once"]),
    (no_eos_stop, ["goes on after its <eos>", "padding"]),
    (greedy_reading(-1, feed_back=False), ["not fed back"]),
    (greedy_reading(0), ["reads the first position's logits, logits[:, 0]", "logits[:, -1]"]),
    (wrong_axis, ["argmax", "dim=-1"]),
    (wrong_axis_same_shape, ["tokens of sequence 0 differ", "argmax over the vocabulary (dim=-1)"]),
    (keeps_bos, ["starts with <bos>"]),
    (too_long, ["more than max_len"]),
    (lambda model, src, max_len, bos_id=2, eos_id=3: greedy_decode(model, src, max_len).float(), ["floats"]),
])
def test_greedy_check_names_each_mistake(fn, words):
    rejects(check_greedy_decode, fn, *words)


# -- the training step -------------------------------------------------------------------------

def step_with(*, mode="train", zero_grad="before", set_to_none=True, clip="norm", scheduler_first=False,
              step_scheduler=True, backward="once", returns="item", optimizer_step=True):
    """A training step, right by default, with one thing changed."""
    def fn(model, batch, loss_fn, optimizer, scheduler, clip_norm=1.0):
        if mode == "train":
            model.train()
        elif mode == "eval":
            model.eval()
        if zero_grad == "before":
            optimizer.zero_grad(set_to_none=set_to_none)
        elif zero_grad == "model":
            model.zero_grad()
        loss = loss_fn(model, batch)
        if backward == "once":
            loss.backward()
        elif backward == "twice":
            loss.backward()
            loss.backward()
        elif backward == "twice, retained":
            loss.backward(retain_graph=True)
            loss.backward()
        if zero_grad == "between":
            optimizer.zero_grad()
        if scheduler_first:
            scheduler.step()
        params = list(model.parameters())
        if clip == "norm":
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        elif clip == "by hand":
            norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params if p.grad is not None))
            scale = torch.clamp(clip_norm / (norm + 1e-6), max=1.0)
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(scale)
        elif clip == "norm 1.0":
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        elif clip == "value":
            torch.nn.utils.clip_grad_value_(params, clip_norm)
        if optimizer_step:
            optimizer.step()
        if clip == "after the step":
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        if step_scheduler and not scheduler_first:
            scheduler.step()
        if zero_grad == "after the step":
            optimizer.zero_grad()
        return {"item": lambda: loss.item(), "float": lambda: float(loss), "tensor": lambda: loss,
                "detached": lambda: loss.detach(), "none": lambda: None,
                "numpy": lambda: loss.detach().numpy()}[returns]()
    return fn


def test_train_step_check_accepts_right_versions(capsys):
    passes(check_train_step, train_step, capsys)
    passes(check_train_step, step_with(), capsys)
    passes(check_train_step, step_with(set_to_none=False), capsys)             # zero_grad(set_to_none=False)
    passes(check_train_step, step_with(zero_grad="model"), capsys)             # model.zero_grad()
    passes(check_train_step, step_with(zero_grad="after the step"), capsys)    # clean gradients for the next step
    passes(check_train_step, step_with(clip="by hand"), capsys)                # the global norm, computed by hand
    passes(check_train_step, step_with(returns="float"), capsys)               # float(loss)


@pytest.mark.parametrize("kwargs, words", [
    (dict(zero_grad="none"), ["after step 2", "pile up", "optimizer.zero_grad()"]),
    (dict(zero_grad="between"), ["did not change", "between loss.backward() and optimizer.step()"]),
    (dict(optimizer_step=False), ["did not change", "optimizer.step() is missing"]),
    (dict(scheduler_first=True), ["learning rate of the *next* step", "after optimizer.step()"]),
    (dict(step_scheduler=False), ["first step's learning rate", "scheduler.step()"]),
    (dict(clip="after the step"), ["not clipped before the update", "*before* optimizer.step()"]),
    (dict(clip="none"), ["not clipped before the update", "clip_grad_norm_"]),
    (dict(clip="norm 1.0"), ["clipped to a norm of 1.0, not to clip_norm=0.05"]),
    (dict(clip="value"), ["clip_grad_value_ clips every entry"]),
    (dict(backward="twice"), ["raised RuntimeError", "loss.backward() ran twice"]),
    (dict(backward="twice, retained"), ["twice what they should be", "retain_graph=True"]),
    (dict(mode="none"), ["dropout were off", "eval mode", "model.train()"]),
    (dict(mode="eval"), ["dropout were off", "eval mode", "model.train()"]),
    (dict(returns="tensor"), ["still attached to its graph", "loss.item()"]),
    (dict(returns="detached"), ["returned a tensor", "loss.item()"]),
    (dict(returns="none"), ["returned None", "return loss.item()"]),
    (dict(returns="numpy"), ["returned a ndarray", "loss.item()"]),
])
def test_train_step_check_names_each_mistake(kwargs, words):
    rejects(check_train_step, step_with(**kwargs), *words)


def test_train_step_check_rejects_the_loss_after_the_update():
    def loss_after(model, batch, loss_fn, optimizer, scheduler, clip_norm=1.0):
        train_step(model, batch, loss_fn, optimizer, scheduler, clip_norm)
        with torch.no_grad():
            return loss_fn(model.eval(), batch).item()
    rejects(check_train_step, loss_after, "the batch's loss before the update")


def test_train_step_check_cases_tell_each_mistake_from_the_reference(recwarn):
    """Each mistake the check names changes the parameters in at least one of its cases, by far more
    than the tolerance: the check's cases are sharp enough to see it."""
    from transformer_lib.checks.training import _STEP_CASES, _gradient_norm, _run_steps, _step_mistakes, _wrong_step
    warnings.simplefilter("ignore")                      # PyTorch warns about the scheduler-first mistake
    assert _gradient_norm() > 20 * _STEP_CASES[0][2] and _gradient_norm() > 1.0    # clipping to 0.05 (or 1.0) matters
    for mistake in _step_mistakes(1.0):
        largest = 0.0
        for _, kind, clip_norm, steps in _STEP_CASES:
            ref = _run_steps(train_step, kind, clip_norm, steps)[0]
            wrong = _run_steps(_wrong_step(mistake), kind, clip_norm, steps)[0]
            largest = max(largest, *((a - b).abs().max().item() for a, b in zip(ref, wrong)))
        assert largest > 1e-3, mistake
