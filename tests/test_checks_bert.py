"""The lesson-10 checks accept correct masking rules and MLM losses and reject typical mistakes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformer_lib.checks import CheckFailed, check_mask_tokens, check_mlm_loss
from transformer_lib.mlm import IGNORE_INDEX, mask_tokens, mlm_loss


# ---- masking rule ------------------------------------------------------------------------

def other_correct_masking(ids, mask_id, num_special, vocab_size, generator=None, mask_prob=0.15):
    """A different but correct rule: one uniform draw decides chosen / [MASK] / random / unchanged."""
    u = torch.rand(ids.shape, generator=generator)
    ordinary = ids >= num_special
    chosen = (u < mask_prob) & ordinary
    rel = u / mask_prob                                                  # uniform in [0, 1) on chosen
    inputs = ids.clone()
    inputs[chosen & (rel < 0.8)] = mask_id
    rand_pos = chosen & (rel >= 0.8) & (rel < 0.9)
    inputs[rand_pos] = torch.randint(num_special, vocab_size, (int(rand_pos.sum()),), generator=generator)
    labels = ids.clone()
    labels[~chosen] = IGNORE_INDEX
    return inputs, labels


def make_wrong(choose_specials=False, shares=(0.8, 0.1, 0.1), labels_everywhere=False, labels_are_inputs=False,
               random_from_all=False, no_generator=False, in_place=False, prob=None, constant_random=False,
               change_unchosen=False, random_range=None, labels_where=None):
    def fn(ids, mask_id, num_special, vocab_size, generator=None, mask_prob=0.15):
        p = mask_prob if prob is None else prob
        gen = None if no_generator else generator
        candidates = torch.ones_like(ids, dtype=torch.bool) if choose_specials else ids >= num_special
        chosen = (torch.rand(ids.shape, generator=gen) < p) & candidates
        action = torch.rand(ids.shape, generator=gen)
        low = 0 if random_from_all else num_special
        low, high = (low, vocab_size) if random_range is None else random_range(mask_id, num_special, vocab_size)
        random_tokens = torch.randint(low, high, ids.shape, generator=gen)
        if constant_random:
            random_tokens = torch.full_like(ids, num_special)
        target = ids if in_place else ids.clone()
        original = ids.clone()
        where = torch.ones_like(chosen) if change_unchosen else chosen
        m, r, _ = shares
        target[where & (action < m)] = mask_id
        sel = where & (action >= m) & (action < m + r)
        target[sel] = random_tokens[sel]
        if labels_everywhere:
            labels = original.clone()
        elif labels_are_inputs:
            labels = torch.where(chosen, target, torch.full_like(ids, IGNORE_INDEX))
        elif labels_where is not None:
            where = labels_where(chosen, original, num_special)
            labels = torch.where(where, original, torch.full_like(ids, IGNORE_INDEX))
        else:
            labels = torch.where(chosen, original, torch.full_like(ids, IGNORE_INDEX))
        return target, labels
    return fn


def masking_with_index_lists(ids, mask_id, num_special, vocab_size, generator=None, mask_prob=0.15):
    """Another correct rule: positions as index lists, a permutation decides the three groups."""
    flat = ids.reshape(-1)
    ordinary = (flat >= num_special).nonzero().squeeze(1)
    chosen = ordinary[torch.rand(len(ordinary), generator=generator) < mask_prob]
    order = chosen[torch.randperm(len(chosen), generator=generator)]
    n_mask, n_random = round(0.8 * len(order)), round(0.1 * len(order))
    inputs, labels = flat.clone(), torch.full_like(flat, IGNORE_INDEX)
    labels[chosen] = flat[chosen]
    inputs[order[:n_mask]] = mask_id
    rand = order[n_mask:n_mask + n_random]
    inputs[rand] = torch.randint(num_special, vocab_size, (len(rand),), generator=generator)
    return inputs.view_as(ids), labels.view_as(ids)


def test_mask_tokens_accepts_correct_rules(capsys):
    assert check_mask_tokens(mask_tokens) is mask_tokens
    assert check_mask_tokens(other_correct_masking) is other_correct_masking
    assert check_mask_tokens(masking_with_index_lists) is masking_with_index_lists
    assert capsys.readouterr().out.count("✅") == 3


@pytest.mark.parametrize("wrong, words", [
    (make_wrong(choose_specials=True), "special tokens"),
    (make_wrong(shares=(1.0, 0.0, 0.0)), "every chosen token became \\[MASK\\]"),
    (make_wrong(shares=(0.1, 0.1, 0.8)), "expected 80 % \\[MASK\\]"),
    (make_wrong(shares=(0.8, 0.2, 0.0)), "expected 80 % \\[MASK\\], 10 % a random token, 10 % unchanged"),
    (make_wrong(labels_everywhere=True), "loss would cover all tokens"),
    (make_wrong(labels_are_inputs=True), "labels hold the corrupted input"),
    (make_wrong(random_from_all=True), "random replacements are special"),
    (make_wrong(constant_random=True), "only a few values"),
    (make_wrong(no_generator=True), "generator=generator"),
    (make_wrong(in_place=True), r"changed its argument `ids` in place"),
    (make_wrong(random_range=lambda m, n, v: (n, v + 1)), r"hold the id 50, outside the vocabulary 0..49: "
                                                         r"torch.randint's upper bound is exclusive"),
    (make_wrong(random_range=lambda m, n, v: (n, v - 1)), r"never take the last word, vocab_size - 1 = 11"),
    (make_wrong(random_range=lambda m, n, v: (n + 1, v)), r"never take the first ordinary id, num_special = 5"),
    (make_wrong(random_range=lambda m, n, v: (m, v)), r"\[MASK\] = 1, .* random replacements are special tokens"),
    (make_wrong(labels_where=lambda chosen, ids, n: ~chosen & (ids >= n)),
     "labels are in the wrong places: every position whose input was replaced has no label"),
    (make_wrong(labels_where=lambda chosen, ids, n: chosen.roll(1, dims=-1) & (ids >= n)),
     r"labels are in the wrong places: at \d+ positions the input was replaced"),
    (make_wrong(labels_where=lambda chosen, ids, n: chosen | (ids < n)),
     r"labels are in the wrong places: special tokens \(\[CLS\], \[SEP\], padding\) have labels"),
    (make_wrong(prob=0.15), "use the mask_prob argument"),
    (make_wrong(prob=0.3), "expected about 15.0 %"),
    (make_wrong(change_unchosen=True), "changed tokens that have no label"),
    (lambda ids, *a, **k: ids, "should return a pair"),
    (lambda ids, *a, **k: (ids, ids), "loss would cover all tokens"),
    (lambda ids, *a, **k: (ids.float(), ids), "dtype"),
])
def test_mask_tokens_rejects_wrong_rules(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_mask_tokens(wrong)


def test_labels_only_on_ordinary_tokens_but_all_of_them_is_loss_over_all_tokens():
    def every_ordinary(ids, mask_id, num_special, vocab_size, generator=None, mask_prob=0.15):
        inputs, _ = mask_tokens(ids, mask_id, num_special, vocab_size, generator=generator, mask_prob=mask_prob)
        return inputs, torch.where(ids >= num_special, ids, torch.full_like(ids, IGNORE_INDEX))
    with pytest.raises(CheckFailed, match="loss would cover"):
        check_mask_tokens(every_ordinary)


# ---- MLM loss ----------------------------------------------------------------------------

def other_correct_loss(logits, labels):
    return F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX)


def selecting_loss(logits, labels):
    chosen = labels != IGNORE_INDEX
    return F.cross_entropy(logits[chosen], labels[chosen])


def float64_loss(logits, labels):
    chosen = labels != IGNORE_INDEX
    logp = torch.log_softmax(logits.double(), dim=-1)
    return -logp[chosen].gather(-1, labels[chosen][:, None]).mean()


def test_mlm_loss_accepts_correct_versions(capsys):
    for fn in (mlm_loss, other_correct_loss, selecting_loss, float64_loss):
        assert check_mlm_loss(fn) is fn
    assert capsys.readouterr().out.count("✅") == 4


def mean_over_all(logits, labels):
    V = logits.shape[-1]
    per = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none")
    return per.sum() / labels.numel()


@pytest.mark.parametrize("wrong, words", [
    (mean_over_all, "averages over all B\\*T positions"),
    (lambda lo, la: F.cross_entropy(lo.reshape(-1, lo.shape[-1]), la.reshape(-1), ignore_index=-100, reduction="sum"),
     "sums the losses"),
    (lambda lo, la: F.cross_entropy(lo.reshape(-1, lo.shape[-1]), la.clamp(min=0).reshape(-1)), "every position"),
    (lambda lo, la: F.cross_entropy(lo.reshape(-1, lo.shape[-1]), la.reshape(-1)) * 0 + F.cross_entropy(
        lo.reshape(-1, lo.shape[-1]), la.reshape(-1), ignore_index=-100) * 1.5, "largest difference"),
    (lambda lo, la: F.cross_entropy(lo, la, ignore_index=-100), "classes in dimension 1"),
    (lambda lo, la: F.cross_entropy(lo.reshape(-1, lo.shape[-1]), la.reshape(-1), ignore_index=0), "ignore_index=-100"),
    (lambda lo, la: F.cross_entropy(lo[la > 0], la[la > 0]), "skips the chosen positions whose label is 0"),
    (lambda lo, la: F.cross_entropy(lo.reshape(-1, lo.shape[-1]), la.reshape(-1), ignore_index=-100).item(),
     "should be a torch.Tensor"),
    (lambda lo, la: F.cross_entropy(lo.detach().reshape(-1, lo.shape[-1]), la.reshape(-1), ignore_index=-100),
     "does not carry gradients"),
])
def test_mlm_loss_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_mlm_loss(wrong)


def test_softmax_over_positions_is_named():
    def wrong_axis(logits, labels):
        logp = torch.log_softmax(logits, dim=1)
        chosen = labels != IGNORE_INDEX
        picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        return -(picked * chosen).sum() / chosen.sum()
    with pytest.raises(CheckFailed, match="over the positions"):
        check_mlm_loss(wrong_axis)
