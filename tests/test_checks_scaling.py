"""The lesson-14 checks: FLOPs per token, and the hand-written gradient all-reduce (run in two
real worker processes)."""
from __future__ import annotations

import multiprocessing

import pytest
import torch
import torch.distributed as dist

from transformer_lib.checks import CheckFailed, check_average_gradients, check_training_flops_per_token
from transformer_lib.scaling import average_gradients, training_flops_per_token


def todo(*args):
    raise NotImplementedError()


# ---- FLOPs per token --------------------------------------------------------------------------

def flops_by_the_layers(config, T):
    """Another correct way: add up every matrix product of one token, forward and backward."""
    D, F = config.d_model, config.d_ff
    per_block = [D * D] * 4 + [D * F, F * D]                      # w_q, w_k, w_v, w_o, linear1, linear2
    forward = sum(2 * w for w in per_block) * config.num_layers + 2 * config.vocab_size * D
    forward += config.num_layers * (2 * T * D + 2 * T * D)        # q k^T and weights @ v
    return float(3 * forward)                                     # backward = 2 x forward


def test_flops_check_accepts_correct_versions(capsys):
    for fn in (training_flops_per_token, flops_by_the_layers,
               lambda c, T: torch.tensor(training_flops_per_token(c, T))):
        assert check_training_flops_per_token(fn) is fn
    assert check_training_flops_per_token(todo) is training_flops_per_token
    out = capsys.readouterr().out
    assert out.count("✅") == 3 and "not implemented yet" in out


def flops(c, T, weight=6, attention=12, blocks=None, output=True, extra=0, attention_width=None, scale=1):
    L, D, F, V = c.num_layers, c.d_model, c.d_ff, c.vocab_size
    per_block = 4 * D * D + 2 * D * F if blocks is None else blocks(D, F)
    weights = L * per_block + (V * D if output else 0) + extra
    return scale * (weight * weights + attention * L * T * (D if attention_width is None else attention_width(c, T)))


@pytest.mark.parametrize("wrong, words", [
    (lambda c, T: flops(c, T, weight=2, attention=4), "forward pass only"),
    (lambda c, T: flops(c, T) // 2, "multiply-adds, not FLOPs"),
    (lambda c, T: flops(c, T, attention=0), "attention term is missing"),
    (lambda c, T: flops(c, T, attention=4), "attention term counts the forward pass only"),
    (lambda c, T: flops(c, T, attention=6), "halved for the causal mask"),
    (lambda c, T: flops(c, T, attention_width=lambda c, T: T * c.d_model), "per sequence"),
    (lambda c, T: flops(c, T, attention_width=lambda c, T: c.d_model // c.num_heads), "uses d_k"),
    (lambda c, T: flops(c, T, attention_width=lambda c, T: c.d_model * c.num_heads), "multiplied by the number of heads"),
    (lambda c, T: flops(c, T, output=False), "output layer is missing"),
    (lambda c, T: flops(c, T, extra=c.vocab_size * c.d_model), "embedding look-up is counted"),
    (lambda c, T: flops(c, T, extra=c.max_len * c.d_model), "position table is counted"),
    (lambda c, T: flops(c, T, extra=T * c.d_model), "position vectors of the T tokens"),
    (lambda c, T: flops(c, T, blocks=lambda D, F: 12 * D * D), "assumes d_ff = 4"),
    (lambda c, T: flops(c, T, blocks=lambda D, F: 3 * D * D + 2 * D * F), "one attention projection is missing"),
    (lambda c, T: flops(c, T, blocks=lambda D, F: 4 * D * D + D * F), "one feed-forward matrix is missing"),
    (lambda c, T: flops(c, T, weight=4, attention=8), "4 FLOPs per weight"),
    (lambda c, T: flops(c, T, scale=T), "whole sequence"),
    (lambda c, T: flops(c, T) + 1000, "expected"),
    (lambda c, T: "a lot", "return a number"),
])
def test_flops_check_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_training_flops_per_token(wrong)


def test_flops_check_names_counting_every_parameter():
    from transformer_lib.scaling import parameter_counts
    with pytest.raises(CheckFailed, match="all the parameters"):
        check_training_flops_per_token(lambda c, T: 6 * parameter_counts(c)["total"] + 12 * c.num_layers * T * c.d_model)


# ---- the hand-written all-reduce (two worker processes per check) ----------------------------
# These functions are sent to the workers the way a notebook's function is: as code.

def average_by_flat_buffer(model):
    """Another correct way: one all-reduce of all gradients in one buffer (what DDP's buckets do)."""
    grads = [p.grad for p in model.parameters()]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def average_dividing_first(model):
    """Another correct way: divide first, then sum; a new tensor assigned to .grad."""
    for p in model.parameters():
        p.grad = p.grad / dist.get_world_size()
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def forgot_to_divide(model):
    for p in model.parameters():
        dist.all_reduce(p.grad)


def divided_twice(model):
    for p in model.parameters():
        p.grad /= dist.get_world_size()
        dist.all_reduce(p.grad)
        p.grad /= dist.get_world_size()


def parameters_not_grads(model):
    for p in model.parameters():
        dist.all_reduce(p.data)
        p.data /= dist.get_world_size()


def parameters_without_division(model):
    with torch.no_grad():
        for p in model.parameters():
            dist.all_reduce(p)


def no_all_reduce(model):
    for p in model.parameters():
        p.grad /= dist.get_world_size()


def does_nothing(model):
    pass


def all_reduces_a_copy(model):
    for p in model.parameters():
        g = p.grad.clone()
        dist.all_reduce(g)
        g /= dist.get_world_size()


def sets_grads_to_none(model):
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad = None


def only_rank_zero_divides(model):
    for p in model.parameters():
        dist.all_reduce(p.grad)
        if dist.get_rank() == 0:
            p.grad /= dist.get_world_size()


def raises_inside(model):
    for p in model.parameters():
        dist.all_reduce(p.grad, op="mean")


def typo_after_the_all_reduce(model):
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad /= dist.get_world_sise()


def make_average(scale):
    """A closure: sent to the workers with the value of its free variable."""
    def fn(model):
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad *= scale
    return fn


def no_stray_children():
    return not multiprocessing.active_children()


def test_all_reduce_check_accepts_correct_versions(capsys):
    for fn in (average_gradients, average_by_flat_buffer, average_dividing_first, make_average(0.5)):
        assert check_average_gradients(fn) is fn
    assert check_average_gradients(todo) is average_gradients
    out = capsys.readouterr().out
    assert out.count("✅") == 4 and "not implemented yet" in out
    assert no_stray_children()


@pytest.mark.parametrize("wrong, words", [
    (forgot_to_divide, "summed over the processes but not averaged"),
    (make_average(1.0), "summed over the processes but not averaged"),
    (divided_twice, "divided by the world size twice"),
    (parameters_not_grads, "all-reduces the parameters"),
    (parameters_without_division, "all-reduces the parameters"),
    (no_all_reduce, "never adds the others'"),
    (does_nothing, "were not all-reduced"),
    (all_reduces_a_copy, "ran on a copy"),
    (sets_grads_to_none, "gradients are None"),
    (only_rank_zero_divides, "different gradients"),
    (raises_inside, r"raised TypeError on a model outside any process group"),     # before any worker starts
    (typo_after_the_all_reduce, r"raised AttributeError on a GPT(.|\n)*\(in a worker process\)(.|\n)*"
                                r"at line: p.grad /= dist.get_world_sise\(\)"),
])
def test_all_reduce_check_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_average_gradients(wrong)
    assert no_stray_children()


def test_all_reduce_check_explains_what_cannot_be_sent():
    lock = multiprocessing.Lock()

    def uses_a_lock(model):
        with lock:
            average_gradients(model)
    with pytest.raises(CheckFailed, match="cannot be sent to another process"):
        check_average_gradients(uses_a_lock)


def average_and_nudge(model):
    average_gradients(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.001)


def test_all_reduce_check_says_the_parameters_must_not_change():
    with pytest.raises(CheckFailed, match="also changed the parameters"):
        check_average_gradients(average_and_nudge)
    assert no_stray_children()


def typo_before_the_all_reduce(model):
    for p in model.parameters():
        p.grad /= world_sise  # noqa: F821 - the learner's typo


def test_all_reduce_check_shows_an_error_before_torch_distributed_at_once():
    with pytest.raises(CheckFailed, match="raised NameError on a model outside any process group") as info:
        check_average_gradients(typo_before_the_all_reduce)
    assert isinstance(info.value.learner_error, NameError)
    assert no_stray_children()
