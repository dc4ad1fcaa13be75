"""The lesson 08 checks accept right answers and name each typical mistake."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformer_lib.checks import (CheckFailed, check_greedy_decode, check_label_smoothed_cross_entropy,
                                    check_noam_lr)
from transformer_lib.decoding import greedy_decode
from transformer_lib.masks import padding_mask
from transformer_lib.training import label_smoothed_cross_entropy, noam_lr


def passes(check, fn, capsys):
    assert check(fn) is fn
    assert "is correct" in capsys.readouterr().out


def rejects(check, fn, *words):
    with pytest.raises(CheckFailed) as info:
        check(fn)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


def not_implemented(check, capsys):
    def todo(*args, **kwargs):
        raise NotImplementedError()
    assert check(todo) is check.reference
    assert "is not implemented yet" in capsys.readouterr().out


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
    not_implemented(check_label_smoothed_cross_entropy, capsys)


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
    not_implemented(check_noam_lr, capsys)


@pytest.mark.parametrize("fn, words", [
    (lambda s, d, w=4000, f=1.0: f * d ** -0.5 * s ** -0.5, ["no warm-up"]),
    (lambda s, d, w=4000, f=1.0: f * d ** -0.5 * s * w ** -1.5, ["warm-up is all there is"]),
    (lambda s, d, w=4000, f=1.0: f * d ** -0.5 * max(s ** -0.5, s * w ** -1.5), ["max instead of min"]),
    (lambda s, d, w=4000, f=1.0: f * min(s ** -0.5, s * w ** -1.5), ["d_model factor is missing"]),
    (lambda s, d, w=4000, f=1.0: f / d * min(s ** -0.5, s * w ** -1.5), ["d_model enters with the wrong power"]),
    (lambda s, d, w=4000, f=1.0: f * d ** -0.5 * min(s ** -0.5, s * w ** -0.5), ["warm-up has the wrong power"]),
    (lambda s, d, w=4000, f=1.0: f * d ** -0.5 * min(1 / s, s * w ** -1.5), ["decay has the wrong power"]),
    (lambda s, d, w=4000, f=1.0: d ** -0.5 * min(s ** -0.5, s * w ** -1.5), ["factor is ignored"]),
    (lambda s, d, w=4000, f=1.0: f * d ** -0.5 * min(s ** -0.5, s * w ** -1.5) * 1.01, ["largest difference"]),
    (lambda s, d, w=4000, f=1.0: None, ["finite number"]),
])
def test_schedule_check_names_each_mistake(fn, words):
    rejects(check_noam_lr, fn, *words)


# -- greedy decoding ---------------------------------------------------------------------------

def naive_greedy(model, src, max_len, bos_id=2, eos_id=3):
    """Another correct version: no cache, the whole prefix every step, runs to max_len."""
    pad = model.config.pad_id
    src_mask = padding_mask(src, pad)
    memory = model.encode(src, src_mask)
    ys = torch.full((src.shape[0], 1), bos_id)
    done = torch.zeros(src.shape[0], dtype=torch.bool)
    for _ in range(max_len):
        nxt = model.generator(model.decode(ys, memory, memory_mask=src_mask))[:, -1].argmax(-1)
        nxt[done] = pad
        done |= nxt == eos_id
        ys = torch.cat([ys, nxt[:, None]], dim=1)
    return ys[:, 1:]


def forward_greedy(model, src, max_len, bos_id=2, eos_id=3):
    """Another correct version: calls model(src, ys) every step, stops when all rows ended."""
    ys = torch.full((src.shape[0], 1), bos_id)
    for _ in range(max_len):
        nxt = model(src, ys)[:, -1].argmax(-1)
        ended = (ys == eos_id).any(dim=1)
        nxt = torch.where(ended, torch.zeros_like(nxt), nxt)
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        if ((ys == eos_id).any(dim=1)).all():
            break
    return ys[:, 1:]


def test_greedy_check_accepts_right_versions(capsys):
    passes(check_greedy_decode, greedy_decode, capsys)
    passes(check_greedy_decode, naive_greedy, capsys)
    passes(check_greedy_decode, forward_greedy, capsys)
    not_implemented(check_greedy_decode, capsys)


def no_eos_stop(model, src, max_len, bos_id=2, eos_id=3):
    ys = torch.full((src.shape[0], 1), bos_id)
    for _ in range(max_len):
        ys = torch.cat([ys, model(src, ys)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ys[:, 1:]


def no_feedback(model, src, max_len, bos_id=2, eos_id=3):
    ys = torch.full((src.shape[0], 1), bos_id)
    out = []
    for _ in range(max_len):
        out.append(model(src, ys)[:, -1].argmax(-1))      # ys never grows
        if (torch.stack(out, 1) == eos_id).any(dim=1).all():
            break
    out = torch.stack(out, 1)
    ended = (out == eos_id).cumsum(1) - (out == eos_id).long() > 0
    return out.masked_fill(ended, 0)


def wrong_axis(model, src, max_len, bos_id=2, eos_id=3):
    ys = torch.full((src.shape[0], 1), bos_id)
    for _ in range(max_len):
        ys = torch.cat([ys, model(src, ys)[:, -1].argmax(dim=0)[:, None]], dim=1)
    return ys[:, 1:]


def wrong_axis_same_shape(model, src, max_len, bos_id=2, eos_id=3):
    ys = torch.full((src.shape[0], 1), bos_id)
    for _ in range(max_len):
        nxt = model(src, ys).argmax(dim=1)[:, -1]           # argmax over positions, then the last vocabulary entry
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        if (ys == eos_id).any(dim=1).all():
            break
    return ys[:, 1:]


def keeps_bos(model, src, max_len, bos_id=2, eos_id=3):
    return torch.cat([torch.full((src.shape[0], 1), bos_id), greedy_decode(model, src, max_len - 1)], dim=1)


def too_long(model, src, max_len, bos_id=2, eos_id=3):
    return naive_greedy(model, src, max_len + 1)                # one step too many


@pytest.mark.parametrize("fn, words", [
    (no_eos_stop, ["goes on after its <eos>", "padding"]),
    (no_feedback, ["not fed back"]),
    (wrong_axis, ["argmax", "dim=-1"]),
    (wrong_axis_same_shape, ["argmax over the vocabulary (dim=-1)"]),
    (keeps_bos, ["starts with <bos>"]),
    (too_long, ["more than max_len"]),
    (lambda model, src, max_len, bos_id=2, eos_id=3: greedy_decode(model, src, max_len).float(), ["floats"]),
])
def test_greedy_check_names_each_mistake(fn, words):
    rejects(check_greedy_decode, fn, *words)
