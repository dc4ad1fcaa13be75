"""Checks for lesson 10's exercises: BERT's masking rule and the masked-LM loss."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..mlm import IGNORE_INDEX, mask_tokens, mlm_loss
from ._core import call, describe, exercise, expect_close, expect_tensor, fail

__all__ = ["check_mask_tokens", "check_mlm_loss"]

@dataclass(frozen=True)
class _Specials:
    """A vocabulary layout: ids below ``num_special`` are special, ``[MASK]`` among them."""
    vocab: int
    num_special: int
    mask_id: int
    cls_id: int
    sep_id: int
    pad_id: int = 0


# [MASK] is the last special id in one layout and the second in the other, so random ids drawn from
# mask_id upwards (instead of num_special) include other special tokens
_BERT_LIKE = _Specials(vocab=50, num_special=7, mask_id=6, cls_id=4, sep_id=5)
_MASK_FIRST = _Specials(vocab=60, num_special=5, mask_id=1, cls_id=2, sep_id=3)


def _batch(B: int, T: int, seed: int, layout: _Specials, padded: bool = True) -> torch.Tensor:
    """``[CLS] words [SEP] <pad>...`` rows of random lengths: a batch with every kind of special."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(layout.num_special, layout.vocab, (B, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g) if padded else torch.full((B,), T)
    for row, n in enumerate(lengths.tolist()):
        ids[row, 0], ids[row, n - 1] = layout.cls_id, layout.sep_id
        ids[row, n:] = layout.pad_id
    return ids


def _tolerance(p: float, n: int) -> float:
    return 5 * math.sqrt(p * (1 - p) / max(n, 1)) + 0.01


def _percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def _run_mask_tokens(fn, ids, layout: _Specials, mask_prob, seed, case):
    out = call(fn, ids, layout.mask_id, layout.num_special, layout.vocab,
               generator=torch.Generator().manual_seed(seed), mask_prob=mask_prob, case=case)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail(f"mask_tokens should return a pair (inputs, labels), got {describe(out)}")
    inputs, labels = out
    expect_tensor(inputs, ids.shape, "inputs (the first thing returned)", dtype=ids.dtype)
    expect_tensor(labels, ids.shape, "labels (the second thing returned)", dtype=ids.dtype)
    bad = (inputs < 0) | (inputs >= layout.vocab)
    if bad.any():
        fail(f"on {case} the inputs hold the id {int(inputs[bad][0])}, outside the vocabulary 0..{layout.vocab - 1}: "
             f"torch.randint's upper bound is exclusive, so random ids come from torch.randint(num_special, "
             f"vocab_size, ...) (an nn.Embedding would raise an IndexError on this id)")
    return inputs, labels


def _expect_label_places(ids, inputs, labels, layout: _Specials, case: str) -> None:
    """Labels sit exactly where a token was chosen: every replaced position, no special token."""
    __tracebackhide__ = True
    special = ids < layout.num_special
    labelled = labels != IGNORE_INDEX
    replaced = inputs != ids
    if (replaced & ~labelled).any():
        if labelled.any() and not (replaced & labelled).any():
            fail(f"on {case} the labels are in the wrong places: every position whose input was replaced has no "
                 f"label, and the labels sit where nothing was chosen (the condition is inverted). Labels hold the "
                 f"original id exactly at the chosen positions, {IGNORE_INDEX} elsewhere")
        n = int((replaced & ~labelled).sum())
        if int(replaced.sum()) > int(labelled.sum()):
            fail(f"on {case} it changed tokens that have no label ({int(replaced.sum())} inputs replaced, "
                 f"{int(labelled.sum())} labels): only the chosen tokens may be replaced; decide [MASK] / random / "
                 f"unchanged for the chosen positions only")
        fail(f"on {case} the labels are in the wrong places: at {n} positions the input was replaced ([MASK] or a "
             f"random token) but the label is {IGNORE_INDEX}. Decide once which positions are chosen (one random "
             f"draw), then label exactly those (labels = ids where chosen) and replace only those")
    if (labelled & special).any():
        if (replaced & special).any():
            fail(f"on {case} it chose special tokens ([CLS], [SEP] or padding, ids below num_special="
                 f"{layout.num_special}): choose among ordinary tokens only (ids >= num_special)")
        fail(f"on {case} the labels are in the wrong places: special tokens ([CLS], [SEP], padding) have labels, "
             f"although none of them was replaced. Only chosen ordinary tokens (ids >= num_special) get a label")


@exercise(reference=mask_tokens)
def check_mask_tokens(fn):
    cases = [(_batch(200, 151, seed=1, layout=_BERT_LIKE), _BERT_LIKE, 0.15,
              "a (200, 151) batch with [CLS], [SEP] and padding ([MASK] = 6, num_special = 7, vocab 50)"),
             (_batch(1, 3001, seed=2, layout=_MASK_FIRST, padded=False), _MASK_FIRST, 0.4,
              "one row of 3001 tokens with mask_prob=0.4 ([MASK] = 1, num_special = 5, vocab 60)")]
    for ids, layout, mask_prob, case in cases:
        inputs, labels = _run_mask_tokens(fn, ids, layout, mask_prob, seed=0, case=case)
        again = _run_mask_tokens(fn, ids, layout, mask_prob, seed=0, case=case)
        if not (torch.equal(again[0], inputs) and torch.equal(again[1], labels)):
            fail("two calls with generators seeded alike gave different results: draw every random number "
                 "with generator=generator (torch.rand(..., generator=generator), torch.randint(..., generator=generator))")

        special = ids < layout.num_special
        chosen = labels != IGNORE_INDEX
        if not chosen.any():
            fail(f"no position has a label: labels should hold the original id at the chosen positions "
                 f"and {IGNORE_INDEX} elsewhere")
        if bool((labels == ids).all()):
            fail(f"every position has a label, so the loss would cover all tokens: set labels to "
                 f"IGNORE_INDEX ({IGNORE_INDEX}) at positions that were not chosen")
        bad = chosen & (labels != ids)
        if bad.any():
            if torch.equal(labels[bad], inputs[bad]):
                fail("labels hold the corrupted input ([MASK] or the random token): the label must be the "
                     "original id, which is what the model has to predict")
            fail("at some chosen positions the label is not the original token: labels = ids where chosen, "
                 f"{IGNORE_INDEX} elsewhere")
        _expect_label_places(ids, inputs, labels, layout, case)

        n_ordinary, n_chosen = int((~special).sum()), int(chosen.sum())
        frac = n_chosen / n_ordinary
        if frac > 0.9:
            fail(f"{_percent(frac)} of the ordinary tokens have a label, so the loss would cover (nearly) all "
                 f"tokens: only the chosen ~{_percent(mask_prob)} get their original id as label, the rest "
                 f"IGNORE_INDEX ({IGNORE_INDEX})")
        if abs(frac - mask_prob) > _tolerance(mask_prob, n_ordinary):
            hint = (" It looks like a fixed 15 %: use the mask_prob argument." if mask_prob != 0.15 and abs(frac - 0.15) < 0.03
                    else "")
            fail(f"it chose {_percent(frac)} of the ordinary tokens on {case}, expected about {_percent(mask_prob)} "
                 f"(mask_prob={mask_prob}).{hint}")
        masked = chosen & (inputs == layout.mask_id)
        replaced = chosen & (inputs != layout.mask_id) & (inputs != ids)
        unchanged = chosen & (inputs == ids)
        shares = {name: int(m.sum()) / n_chosen for name, m in
                  (("[MASK]", masked), ("a random token", replaced), ("unchanged", unchanged))}
        expected = {"[MASK]": 0.8, "a random token": 0.1, "unchanged": 0.1}
        if shares["[MASK]"] > 0.99:
            fail("every chosen token became [MASK]: of the chosen tokens 80 % become [MASK], 10 % a random "
                 "token and 10 % stay unchanged")
        for name, p in expected.items():
            if abs(shares[name] - p) > _tolerance(p, n_chosen):
                got = ", ".join(f"{_percent(v)} {k}" for k, v in shares.items())
                fail(f"of the chosen tokens {got} on {case}; expected 80 % [MASK], 10 % a random token, 10 % unchanged")
        _expect_random_ids(inputs[replaced], layout, case)
    # the bounds of the random ids: every ordinary token chosen, 7 ordinary ids, so that about 200 random
    # draws reach both ends of num_special .. vocab_size - 1
    layout = _Specials(vocab=12, num_special=5, mask_id=1, cls_id=2, sep_id=3)
    ids = torch.randint(5, 12, (4, 500), generator=torch.Generator().manual_seed(3))
    case = "a (4, 500) batch of ordinary tokens with mask_prob=1.0 (num_special = 5, vocab 12)"
    inputs, labels = _run_mask_tokens(fn, ids, layout, 1.0, seed=0, case=case)
    random_ids = inputs[(inputs != ids) & (inputs != layout.mask_id)]
    _expect_random_ids(random_ids, layout, case, both_ends=True)
    return len(cases) + 1


def _expect_random_ids(random_ids: torch.Tensor, layout: _Specials, case: str, both_ends: bool = False) -> None:
    """Random replacements are ordinary ids, many different ones, and (``both_ends``, where there are
    enough draws) they reach both ends of num_special .. vocab_size - 1."""
    __tracebackhide__ = True
    specials = random_ids[random_ids < layout.num_special]
    if len(specials):
        fail(f"on {case} some random replacements are special tokens (e.g. id {int(specials[0])}, below "
             f"num_special={layout.num_special}; [MASK] is {layout.mask_id}): draw them from the ordinary ids, "
             f"torch.randint(num_special, vocab_size, ...)")
    ends = ((layout.num_special, "the first ordinary id, num_special"),
            (layout.vocab - 1, "the last word, vocab_size - 1")) if both_ends else ()
    for end, words in ends:
        if not (random_ids == end).any():
            fail(f"on {case} the random replacements never take {words} = {end}, in {len(random_ids)} draws: draw "
                 f"them uniformly from num_special .. vocab_size - 1 with torch.randint(num_special, vocab_size, "
                 f"...) (its upper bound is exclusive, so pass vocab_size itself)")
    if random_ids.unique().numel() < min(10, random_ids.numel(), layout.vocab - layout.num_special):
        fail(f"on {case} the random replacements take only a few values: draw a fresh uniform random ordinary "
             f"id for every replaced position")


def _mlm_cases():
    g = torch.Generator().manual_seed(3)
    cases = []
    for B, T, V, p in ((2, 5, 11, 0.5), (3, 7, 13, 0.3), (1, 9, 6, 0.0)):
        logits = torch.randn(B, T, V, generator=g) * 2
        labels = torch.randint(0, V, (B, T), generator=g)
        keep = torch.rand(B, T, generator=g) < p
        keep.view(-1)[1] = True                                   # at least one chosen position ...
        labels.view(-1)[1] = 0                                    # ... whose label is id 0 (a real token id)
        labels = torch.where(keep, labels, torch.full_like(labels, IGNORE_INDEX))
        cases.append((logits, labels))
    return cases


@exercise(reference=mlm_loss)
def check_mlm_loss(fn):
    cases = _mlm_cases()
    for logits, labels in cases:
        B, T, V = logits.shape
        chosen = labels != IGNORE_INDEX
        case = (f"logits {tuple(logits.shape)} with {int(chosen.sum())} chosen positions (one of them with "
                f"label id 0)")
        got = call(fn, logits.requires_grad_(), labels, case=case, hints={
            "out of bounds|-100": f"labels are {IGNORE_INDEX} where there is nothing to predict: pass "
                                  f"ignore_index={IGNORE_INDEX} to F.cross_entropy",
            "Expected target size|expected input batch_size": "F.cross_entropy wants the classes in dimension 1: "
                                                              "reshape logits to (B*T, V) and labels to (B*T,)",
        })
        logits = logits.detach()
        expect_tensor(got, (), "the loss (a scalar tensor)")
        if not got.requires_grad:
            fail("the loss does not carry gradients: compute it with torch operations on the logits (no .item(), "
                 "no NumPy)")
        flat = F.cross_entropy(logits.reshape(-1, V), labels.clamp(min=0).reshape(-1), reduction="none").view(B, T)
        positive = chosen & (labels > 0)
        expect_close(got.detach(), mlm_loss(logits, labels), f"the loss on {case}", mistakes={
            f"it averages over all B*T positions, counting the positions without a label as 0: average over the "
            f"chosen positions only (F.cross_entropy(..., ignore_index={IGNORE_INDEX}) does this)":
                (flat * chosen).sum() / (B * T),
            "it sums the losses of the chosen positions: take their mean":
                (flat * chosen).sum(),
            "it computes the loss at every position (the labels -100 turned into token 0): only chosen positions "
            f"count; use ignore_index={IGNORE_INDEX}": flat.mean(),
            f"it skips the chosen positions whose label is 0 (labels > 0 or ignore_index=0?): id 0 is a real "
            f"token id; select the chosen positions with labels != {IGNORE_INDEX}":
                (flat * positive).sum() / positive.sum(),
            "it takes the softmax over the positions (dim=1) instead of the vocabulary (dim=-1)":
                _loss_with_wrong_axis(logits, labels),
        }, hint=f"Expected F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index={IGNORE_INDEX}).")
    return len(cases)


def _loss_with_wrong_axis(logits, labels):
    logp = torch.log_softmax(logits, dim=1)                                   # over T instead of V
    chosen = labels != IGNORE_INDEX
    picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return -(picked * chosen).sum() / chosen.sum()
