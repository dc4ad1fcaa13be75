"""Checks for lesson 10's exercises: BERT's masking rule and the masked-LM loss."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..mlm import IGNORE_INDEX, mask_tokens, mlm_loss
from ._core import CheckFailed, call, describe, exercise, expect_close, expect_tensor, fail

__all__ = ["check_mask_tokens", "check_mlm_loss"]

VOCAB, NUM_SPECIAL, MASK_ID, CLS_ID, SEP_ID, PAD_ID = 50, 7, 6, 4, 5, 0


def _batch(B: int, T: int, seed: int, padded: bool = True) -> torch.Tensor:
    """``[CLS] words [SEP] <pad>...`` rows of random lengths: a batch with every kind of special."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(NUM_SPECIAL, VOCAB, (B, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g) if padded else torch.full((B,), T)
    for row, n in enumerate(lengths.tolist()):
        ids[row, 0], ids[row, n - 1] = CLS_ID, SEP_ID
        ids[row, n:] = PAD_ID
    return ids


def _tolerance(p: float, n: int) -> float:
    return 5 * math.sqrt(p * (1 - p) / max(n, 1)) + 0.01


def _percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def _run_mask_tokens(fn, ids, mask_prob, seed, case):
    out = call(fn, ids, MASK_ID, NUM_SPECIAL, VOCAB, generator=torch.Generator().manual_seed(seed),
               mask_prob=mask_prob, case=case)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail(f"mask_tokens should return a pair (inputs, labels), got {describe(out)}")
    inputs, labels = out
    expect_tensor(inputs, ids.shape, "inputs (the first thing returned)", dtype=ids.dtype)
    expect_tensor(labels, ids.shape, "labels (the second thing returned)", dtype=ids.dtype)
    return inputs, labels


@exercise(reference=mask_tokens)
def check_mask_tokens(fn):
    cases = [(_batch(200, 151, seed=1), 0.15, "a (200, 151) batch with [CLS], [SEP] and padding"),
             (_batch(1, 3001, seed=2, padded=False), 0.4, "one row of 3001 tokens with mask_prob=0.4")]
    for ids, mask_prob, case in cases:
        original = ids.clone()
        inputs, labels = _run_mask_tokens(fn, ids, mask_prob, seed=0, case=case)
        if not torch.equal(ids, original):
            fail("it changed `ids` in place: work on a copy (ids.clone() or torch.where) and leave the input as it was")
        again = _run_mask_tokens(fn, original.clone(), mask_prob, seed=0, case=case)
        if not (torch.equal(again[0], inputs) and torch.equal(again[1], labels)):
            fail("two calls with generators seeded alike gave different results: draw every random number "
                 "with generator=generator (torch.rand(..., generator=generator), torch.randint(..., generator=generator))")

        special = ids < NUM_SPECIAL
        chosen = labels != IGNORE_INDEX
        if not chosen.any():
            fail(f"no position has a label: labels should hold the original id at the chosen positions "
                 f"and {IGNORE_INDEX} elsewhere")
        if bool((labels == ids).all()):
            fail(f"every position has a label, so the loss would cover all tokens: set labels to "
                 f"IGNORE_INDEX ({IGNORE_INDEX}) at positions that were not chosen")
        if (chosen & special).any():
            fail(f"it chose special tokens ([CLS], [SEP] or padding, ids below num_special={NUM_SPECIAL}); "
                 "choose among ordinary tokens only (ids >= num_special)")
        bad = chosen & (labels != ids)
        if bad.any():
            if torch.equal(labels[bad], inputs[bad]):
                fail("labels hold the corrupted input ([MASK] or the random token): the label must be the "
                     "original id, which is what the model has to predict")
            fail("at some chosen positions the label is not the original token: labels = ids where chosen, "
                 f"{IGNORE_INDEX} elsewhere")
        if (~chosen & (inputs != ids)).any():
            fail(f"it changed tokens that have no label (labels {IGNORE_INDEX}): only chosen tokens may be replaced; "
                 "decide [MASK] / random / unchanged for the chosen positions only")

        n_ordinary, n_chosen = int((~special).sum()), int(chosen.sum())
        frac = n_chosen / n_ordinary
        if frac > 0.9:
            fail(f"{_percent(frac)} of the ordinary tokens have a label, so the loss would cover (nearly) all "
                 f"tokens: only the chosen ~{_percent(mask_prob)} get their original id as label, the rest "
                 f"IGNORE_INDEX ({IGNORE_INDEX})")
        if abs(frac - mask_prob) > _tolerance(mask_prob, n_ordinary):
            hint = (" It looks like a fixed 15 %: use the mask_prob argument." if mask_prob != 0.15 and abs(frac - 0.15) < 0.03
                    else "")
            fail(f"it chose {_percent(frac)} of the ordinary tokens, expected about {_percent(mask_prob)} "
                 f"(mask_prob={mask_prob}).{hint}")
        masked = chosen & (inputs == MASK_ID)
        replaced = chosen & (inputs != MASK_ID) & (inputs != ids)
        unchanged = chosen & (inputs == ids)
        if ((inputs == MASK_ID) & ~chosen).any():
            fail("[MASK] appears at a position without a label")
        shares = {name: int(m.sum()) / n_chosen for name, m in
                  (("[MASK]", masked), ("a random token", replaced), ("unchanged", unchanged))}
        expected = {"[MASK]": 0.8, "a random token": 0.1, "unchanged": 0.1}
        if shares["[MASK]"] > 0.99:
            fail("every chosen token became [MASK]: of the chosen tokens 80 % become [MASK], 10 % a random "
                 "token and 10 % stay unchanged")
        for name, p in expected.items():
            if abs(shares[name] - p) > _tolerance(p, n_chosen):
                got = ", ".join(f"{_percent(v)} {k}" for k, v in shares.items())
                fail(f"of the chosen tokens {got}; expected 80 % [MASK], 10 % a random token, 10 % unchanged")
        random_ids = inputs[replaced]
        if (random_ids < NUM_SPECIAL).any():
            fail("some random replacements are special tokens: draw them from the ordinary ids, "
                 "torch.randint(num_special, vocab_size, ...)")
        if random_ids.unique().numel() < min(10, random_ids.numel()):
            fail("the random replacements take only a few values: draw a fresh uniform random ordinary id "
                 "for every replaced position")
    return len(cases)


def _mlm_cases():
    g = torch.Generator().manual_seed(3)
    cases = []
    for B, T, V, p in ((2, 5, 11, 0.5), (3, 7, 13, 0.3), (1, 9, 6, 0.0)):
        logits = torch.randn(B, T, V, generator=g) * 2
        labels = torch.randint(0, V, (B, T), generator=g)
        keep = torch.rand(B, T, generator=g) < p
        keep.view(-1)[1] = True                                   # at least one chosen position
        labels = torch.where(keep, labels, torch.full_like(labels, IGNORE_INDEX))
        cases.append((logits, labels))
    return cases


@exercise(reference=mlm_loss)
def check_mlm_loss(fn):
    cases = _mlm_cases()
    for logits, labels in cases:
        B, T, V = logits.shape
        case = f"logits {tuple(logits.shape)} with {int((labels != IGNORE_INDEX).sum())} chosen positions"
        try:
            got = fn(logits.clone().requires_grad_(), labels.clone())
        except (NotImplementedError, CheckFailed):
            raise
        except Exception as e:  # noqa: BLE001
            text = str(e)
            if "out of bounds" in text or "-100" in text:
                fail(f"your function raised {type(e).__name__} on {case}: {text}. Labels are {IGNORE_INDEX} where "
                     f"there is nothing to predict: pass ignore_index={IGNORE_INDEX} to F.cross_entropy")
            if "Expected target size" in text or "expected input batch_size" in text:
                fail(f"your function raised {type(e).__name__} on {case}: {text}. F.cross_entropy wants the "
                     "classes in dimension 1: reshape logits to (B*T, V) and labels to (B*T,)")
            raise CheckFailed(f"your function raised {type(e).__name__} on {case}: {e}") from e
        expect_tensor(got, (), "the loss (a scalar tensor)")
        if not got.requires_grad:
            fail("the loss does not carry gradients: compute it with torch operations on the logits (no .item(), "
                 "no NumPy)")
        chosen = labels != IGNORE_INDEX
        flat = F.cross_entropy(logits.reshape(-1, V), labels.clamp(min=0).reshape(-1), reduction="none").view(B, T)
        expect_close(got.detach(), mlm_loss(logits, labels), f"the loss on {case}", mistakes={
            f"it averages over all B*T positions, counting the positions without a label as 0: average over the "
            f"chosen positions only (F.cross_entropy(..., ignore_index={IGNORE_INDEX}) does this)":
                (flat * chosen).sum() / (B * T),
            "it sums the losses of the chosen positions: take their mean":
                (flat * chosen).sum(),
            "it computes the loss at every position (the labels -100 turned into token 0): only chosen positions "
            f"count; use ignore_index={IGNORE_INDEX}": flat.mean(),
            "it takes the softmax over the positions (dim=1) instead of the vocabulary (dim=-1)":
                _loss_with_wrong_axis(logits, labels),
        }, hint=f"Expected F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index={IGNORE_INDEX}).")
    return len(cases)


def _loss_with_wrong_axis(logits, labels):
    logp = torch.log_softmax(logits, dim=1)                                   # over T instead of V
    chosen = labels != IGNORE_INDEX
    picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return -(picked * chosen).sum() / chosen.sum()
