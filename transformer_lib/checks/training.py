"""Checks for the lesson 08 exercises: the label-smoothed loss, the learning-rate schedule,
the training step, greedy decoding."""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..data import Batch
from ..decoding import BOS_ID, EOS_ID, greedy_decode
from ..masks import padding_mask
from ..training import label_smoothed_cross_entropy, lr_scheduler, noam_lr, shift_right, train_step
from ..transformer import Transformer, TransformerConfig
from ._core import as_real_number, call, close, describe, diagnose, exercise, expect_close, fail, where_wrong
from ._watch import spy

__all__ = ["check_label_smoothed_cross_entropy", "check_noam_lr", "check_train_step", "check_greedy_decode",
           "decoding_test_model", "train_step_test_model"]


# -- the label-smoothed loss -------------------------------------------------------------------

def _smoothed_loss(logits, target, smoothing, pad_id, spread="all", ignore_pad=True, denominator="tokens"):
    """The reference and its typical wrong versions, for diagnoses.

    spread: over which classes the ``smoothing`` mass goes: "all" V classes (right), "others"
    (the V-1 wrong classes), "no_pad" (every class but <pad>), "others_no_pad" (V-2 classes:
    the Annotated Transformer's convention), "none" (no smoothing).
    """
    V = logits.shape[-1]
    log_probs = torch.log_softmax(logits.double(), dim=-1).reshape(-1, V)
    target = target.reshape(-1)
    one_hot = torch.nn.functional.one_hot(target, V).double()
    allowed = torch.ones(V, dtype=torch.double)
    if spread in ("no_pad", "others_no_pad"):
        allowed[pad_id] = 0.0
    uniform = allowed.expand(len(target), V).clone()
    if spread in ("others", "others_no_pad"):
        uniform = uniform * (1 - one_hot)
    uniform = uniform / uniform.sum(dim=-1, keepdim=True)
    eps = 0.0 if spread == "none" else smoothing
    q = (1 - eps) * one_hot + eps * uniform
    per_token = -(q * log_probs).sum(dim=-1)
    keep = target != pad_id if ignore_pad else torch.ones_like(target, dtype=torch.bool)
    total = (per_token * keep).sum()
    if denominator == "tokens":
        return (total / keep.sum().clamp(min=1)).float()
    if denominator == "all":
        return (total / len(target)).float()
    return total.float()                                   # "sum"


def _loss_cases():
    g = torch.Generator().manual_seed(8)
    cases = []
    logits = torch.randn(2, 5, 7, generator=g) * 2         # (B, T, V) with padding at the end of one row
    target = torch.randint(1, 7, (2, 5), generator=g)
    target[0, 3:] = 0
    cases.append((logits, target, 0.1, 0, "logits (2, 5, 7), padding in row 0, smoothing 0.1"))
    cases.append((logits, target, 0.3, 0, "the same with smoothing 0.3"))
    cases.append((logits, target, 0.0, 0, "the same with smoothing 0 (plain cross-entropy)"))
    logits = torch.randn(1, 3, 9, generator=g)              # a batch of one, pad id 2
    target = torch.tensor([[4, 8, 2]])
    cases.append((logits, target, 0.2, 2, "a batch of 1, V = 9, pad_id = 2"))
    logits = torch.randn(6, 5, generator=g)                 # (N, V) logits
    target = torch.tensor([1, 2, 0, 4, 3, 0])
    cases.append((logits, target, 0.1, 0, "(N, V) = (6, 5) logits and (N,) targets"))
    return cases


@exercise(reference=label_smoothed_cross_entropy)
def check_label_smoothed_cross_entropy(fn):
    cases = _loss_cases()
    for logits, target, eps, pad_id, case in cases:
        got = call(fn, logits.clone(), target.clone(), smoothing=eps, pad_id=pad_id, case=case)
        expected = _smoothed_loss(logits, target, eps, pad_id)
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            fail(f"the loss should be a scalar tensor (dim 0) on {case}, got {describe(got)}: "
                 f"average over the non-padding tokens")
        if not torch.isfinite(got):
            fail(f"the loss is {got.item()} on {case}: compute log-probabilities with torch.log_softmax")
        mistakes = {
            "the smoothing mass goes to the V-1 wrong classes only; here (as in PyTorch and in "
            "Szegedy et al.) it is spread over all V classes: q = (1 - eps) * one_hot + eps / V":
                _smoothed_loss(logits, target, eps, pad_id, spread="others"),
            "the smoothing mass skips the <pad> class; spread eps / V over all V classes, <pad> included "
            "(padding positions are ignored, the <pad> class is not)":
                _smoothed_loss(logits, target, eps, pad_id, spread="no_pad"),
            "the smoothing mass goes to V-2 classes (neither the correct one nor <pad>, the Annotated "
            "Transformer's convention); here it is spread over all V classes: eps / V each":
                _smoothed_loss(logits, target, eps, pad_id, spread="others_no_pad"),
            "there is no smoothing: the target should be (1 - smoothing) * one_hot + smoothing / V":
                _smoothed_loss(logits, target, eps, pad_id, spread="none"),
            "padding positions are not ignored: drop the tokens whose target is pad_id":
                _smoothed_loss(logits, target, eps, pad_id, ignore_pad=False),
            "the average is over all positions, padding included: divide by the number of "
            "non-padding tokens":
                _smoothed_loss(logits, target, eps, pad_id, denominator="all"),
            "the loss is a sum over tokens; average it over the non-padding tokens":
                _smoothed_loss(logits, target, eps, pad_id, denominator="sum"),
        }
        if eps == 0.0:
            mistakes = {k: v for k, v in mistakes.items() if "padding" in k or "sum" in k}
        expect_close(got, expected, f"the loss on {case}", mistakes=mistakes, atol=1e-5, rtol=1e-5)
    # huge logits: log(softmax(x)) underflows to log(0) = -inf, log_softmax does not
    logits = torch.tensor([[[300.0, -300.0, 0.0, 50.0], [0.0, 1.0, -400.0, 2.0]]])
    target = torch.tensor([[1, 2]])
    case = "logits as large as ±400"
    got = call(fn, logits, target, smoothing=0.1, pad_id=0, case=case)
    if not isinstance(got, torch.Tensor) or not torch.isfinite(got).all():
        fail(f"the loss is not finite on {case}: log(softmax(x)) underflows to log(0) = -inf; "
             f"use torch.log_softmax, which computes it stably")
    expect_close(got, _smoothed_loss(logits, target, 0.1, 0), f"the loss on {case}", atol=1e-3, rtol=1e-5)
    # the gradient must flow to the logits, also when every target is padding (the loss is then 0, not 0/0)
    for case, target in (("logits that require a gradient", torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])),
                         ("a batch with only padding (logits that require a gradient)", torch.zeros(2, 4, dtype=torch.long))):
        logits = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(9)).requires_grad_()
        got = call(fn, logits, target, smoothing=0.1, pad_id=0, case=case)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            fail(f"the loss should be a scalar tensor on {case}, got {describe(got)}")
        if not torch.isfinite(got).all() or ("only padding" in case and abs(float(got)) > 1e-6):
            fail(f"on {case} the loss should be 0, got {float(got)}: divide by the number of non-padding tokens "
                 f"clamped to at least 1 (0 / 0 is NaN)" if "only padding" in case else
                 f"the loss is {float(got)} on {case}")
        if not got.requires_grad:
            if "only padding" in case:
                fail(f"on {case} the loss carries no gradient: a separate branch that returns torch.tensor(0.0) "
                     f"cuts the loss off from the logits, and loss.backward() fails in training. Compute the same "
                     f"formula for every batch and divide by the number of tokens clamped to at least 1 (or return "
                     f"logits.sum() * 0.0)")
            fail(f"the loss does not carry a gradient to the logits on {case}: compute it with torch operations "
                 f"only (no .item(), .detach() or NumPy)")
    return len(cases) + 3


# -- the learning-rate schedule -----------------------------------------------------------------

_SCHEDULE_SETTINGS = [(512, 4000, 1.0), (64, 200, 2.0), (12, 7, 0.5)]
_SCHEDULE_STEPS = [1, 2, 3, 6, 7, 8, 100, 199, 200, 201, 1000, 4000, 4001, 20000]


def _schedule_values(lr):
    return torch.tensor([lr(step, d, w, f) for d, w, f in _SCHEDULE_SETTINGS for step in _SCHEDULE_STEPS],
                        dtype=torch.float64)


@exercise(reference=noam_lr)
def check_noam_lr(fn):
    got, where = [], []
    for d, w, f in _SCHEDULE_SETTINGS:
        for step in _SCHEDULE_STEPS:
            case = f"noam_lr(step={step}, d_model={d}, warmup_steps={w}, factor={f})"
            value = as_real_number(call(fn, step, d, w, f, case=case), case)
            if not math.isfinite(value):
                fail(f"{case} should be a finite number, got {value!r}")
            got.append(value)
            where.append((step, d, w, f))
    got = torch.tensor(got, dtype=torch.float64)
    expected = _schedule_values(noam_lr)
    bad = (~torch.isclose(got, expected, atol=0.0, rtol=1e-6)).nonzero()
    if not len(bad):
        return len(got)
    i = int(bad[0])
    step, d, w, f = where[i]
    at = (f"at step {step} (d_model={d}, warmup_steps={w}, factor={f}) it gives {got[i].item():.6g}, expected "
          f"{expected[i].item():.6g}")
    mistakes = {
        "there is no warm-up: the rate must grow linearly, step * warmup_steps ** -1.5, for the first "
        "warmup_steps steps (take the min of the two terms)":
            _schedule_values(lambda s, d, w, f: f * d ** -0.5 * s ** -0.5),
        "the warm-up is all there is: after warmup_steps the rate must decay like step ** -0.5 "
        "(take the min of the two terms)":
            _schedule_values(lambda s, d, w, f: f * d ** -0.5 * s * w ** -1.5),
        "max instead of min: the rate is the smaller of step ** -0.5 and step * warmup_steps ** -1.5":
            _schedule_values(lambda s, d, w, f: f * d ** -0.5 * max(s ** -0.5, s * w ** -1.5)),
        "the d_model factor is missing: multiply by d_model ** -0.5":
            _schedule_values(lambda s, d, w, f: f * min(s ** -0.5, s * w ** -1.5)),
        "d_model enters with the wrong power: it is d_model ** -0.5":
            _schedule_values(lambda s, d, w, f: f * d ** -1 * min(s ** -0.5, s * w ** -1.5)),
        "the warm-up has the wrong power: it is step * warmup_steps ** -1.5 (so both terms meet at "
        "step = warmup_steps)":
            _schedule_values(lambda s, d, w, f: f * d ** -0.5 * min(s ** -0.5, s * w ** -0.5)),
        "the decay has the wrong power: after the warm-up the rate falls like step ** -0.5":
            _schedule_values(lambda s, d, w, f: f * d ** -0.5 * min(s ** -1.0, s * w ** -1.5)),
        "factor is ignored: multiply the whole rate by factor":
            _schedule_values(lambda s, d, w, f: d ** -0.5 * min(s ** -0.5, s * w ** -1.5)),
    }
    found = diagnose(got, mistakes, atol=0.0, rtol=1e-6)
    fail(f"the learning rate is wrong {at}: {found}" if found else
         f"the learning rate is wrong {at}. Expected factor * d_model ** -0.5 * min(step ** -0.5, "
         f"step * warmup_steps ** -1.5).")


# -- greedy decoding ---------------------------------------------------------------------------

def decoding_test_model(seed: int = 0) -> Transformer:
    """A small random Transformer (source vocabulary 13, target 11) whose outputs end with
    ``<eos>`` after different numbers of steps: the probability of ``<eos>`` grows with the
    position (through a learned positional embedding) and differs between inputs."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    config = TransformerConfig(src_vocab_size=13, tgt_vocab_size=11, d_model=12, num_heads=3, num_layers=2,
                               d_ff=20, dropout=0.0, max_len=40, positional="learned", tie_weights=False)
    model = Transformer(config).eval()
    torch.random.set_rng_state(generator_state)
    with torch.no_grad():
        model.tgt_pos.embedding.weight[:, 0] = 0.3 * (torch.arange(40.0) - 4)   # feature 0 grows with position
        model.generator.weight[EOS_ID] = 0.0
        model.generator.weight[EOS_ID, 0] = 3.0                                 # ... and pushes towards <eos>
        model.generator.bias[:EOS_ID] -= 10.0                                   # never <pad>, <unk>, <bos>
    return model


def _greedy_no_stop(model, src, max_len, bos_id=BOS_ID, eos_id=EOS_ID):
    """Wrong: goes on generating after <eos>."""
    src_mask = padding_mask(src, model.config.pad_id)
    memory = model.encode(src, src_mask)
    ys = torch.full((src.shape[0], 1), bos_id, dtype=torch.long)
    for _ in range(max_len):
        logits = model.generator(model.decode(ys, memory, memory_mask=src_mask))
        ys = torch.cat([ys, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return ys[:, 1:]


def _greedy_no_feedback(model, src, max_len, bos_id=BOS_ID, eos_id=EOS_ID):
    """Wrong: feeds <bos> at every step instead of the tokens predicted so far."""
    src_mask = padding_mask(src, model.config.pad_id)
    memory = model.encode(src, src_mask)
    B = src.shape[0]
    out, done = [], torch.zeros(B, dtype=torch.bool)
    ys = torch.full((B, 1), bos_id, dtype=torch.long)
    for _ in range(max_len):
        token = model.generator(model.decode(ys, memory, memory_mask=src_mask))[:, -1].argmax(dim=-1)
        token = token.masked_fill(done, model.config.pad_id)
        out.append(token)
        done |= token == eos_id
        if done.all():
            break
    return torch.stack(out, dim=1)


def _trim(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop trailing columns that are padding in every row."""
    keep = ids.shape[1]
    while keep > 0 and bool((ids[:, keep - 1] == pad_id).all()):
        keep -= 1
    return ids[:, :keep]


def _tokens(row: torch.Tensor, pad_id: int) -> list[int]:
    """The ids of one output row without its trailing padding."""
    ids = row.tolist()
    while ids and ids[-1] == pad_id:
        ids.pop()
    return ids


@exercise(reference=greedy_decode)
def check_greedy_decode(fn):
    model = decoding_test_model()
    pad = model.config.pad_id
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, 13, (5, 7), generator=g)
    src[0, 5:] = pad
    cases = [(src, 12, "a batch of 5 sources (one padded), max_len=12"),
             (src[2:3], 12, "a batch of 1, max_len=12"),
             (src, 4, "a batch of 5, max_len=4 (shorter than some outputs)")]
    size_hint = ("if the error is about sizes: the next token is logits[:, -1].argmax(dim=-1), the argmax over the "
                 "vocabulary (dim=-1) of the last position's logits, one id per sequence, shape (B,)")
    for src_case, max_len, case in cases:
        encoded, decoder_lengths = [], []
        with spy(model.encoder, "forward", lambda args, kwargs: encoded.append(args[0].shape[0])), \
                spy(model.decoder, "forward", lambda args, kwargs: decoder_lengths.append(args[0].shape[1])):
            got = call(fn, model, src_case, max_len, bos_id=BOS_ID, eos_id=EOS_ID, case=case,
                       explain=lambda error: size_hint if isinstance(error, RuntimeError) else None)
        B = src_case.shape[0]
        if sum(encoded) > B:
            fail(f"on {case} the encoder ran {len(encoded)} times ({sum(encoded)} source rows for {B} sources): "
                 f"the source does not change while decoding, so encode it once before the loop, memory = "
                 f"model.encode(src, src_mask), and call only model.decode(ys, memory, memory_mask=src_mask) and "
                 f"model.generator at every step (model(src, ys) runs the encoder again at every step)")
        expected = greedy_decode(model, src_case, max_len)
        if not isinstance(got, torch.Tensor) or got.dim() != 2 or got.shape[0] != B:
            fail(f"on {case} the output should be a (B, L) = ({B}, L) tensor of token ids, got {describe(got)}. "
                 f"The next token is logits[:, -1].argmax(dim=-1): the last position, the most probable "
                 f"token over the vocabulary (dim=-1), one id per sequence")
        if got.is_floating_point():
            fail(f"on {case} the output holds floats: return token ids (argmax gives integers)")
        if got.shape[1] > max_len:
            fail(f"on {case} the output has {got.shape[1]} tokens, more than max_len={max_len}: "
                 f"generate at most max_len tokens (<eos> included, <bos> not part of the output)")
        got = got.long()
        if got.shape[1] and bool((got[:, 0] == BOS_ID).all()):
            fail(f"on {case} the output starts with <bos>: return only the generated tokens (drop ys[:, :1])")
        for row in got:
            hits = (row == EOS_ID).nonzero()
            if len(hits) and bool((row[hits[0, 0] + 1:] != pad).any()):
                wrong = _greedy_no_stop(model, src_case, max_len)
                note = " (exactly what generating on after <eos> gives)" if torch.equal(got, wrong) else ""
                fail(f"on {case} a sequence goes on after its <eos>{note}: once a row has produced <eos>, "
                     f"fill it with padding (pad_id={pad}), and stop when every row has ended")
        got_trim, expected_trim = _trim(got, pad), _trim(expected, pad)
        if got_trim.shape != expected_trim.shape or not torch.equal(got_trim, expected_trim):
            same_as_no_feedback = torch.equal(got_trim, _trim(_greedy_no_feedback(model, src_case, max_len), pad))
            if same_as_no_feedback and max(decoder_lengths, default=1) > 1:
                fail(f"on {case} it reads the first position's logits, logits[:, 0], at every step: the decoder "
                     f"input grows, but the prediction for the next token is at the *last* position: "
                     f"logits[:, -1].argmax(dim=-1)")
            if same_as_no_feedback:
                fail(f"on {case} the prediction is not fed back: the decoder input must grow by the predicted "
                     f"token every step (ys = torch.cat([ys, next_token[:, None]], dim=1))")
            rows = [(_tokens(a, pad), _tokens(b, pad)) for a, b in zip(got, expected)]
            row = next(i for i, (a, b) in enumerate(rows) if a != b)
            fail(f"on {case} the tokens of sequence {row} differ from greedy decoding's: expected "
                 f"{rows[row][1]}, got {rows[row][0]}. At each step feed every token so "
                 f"far (starting with <bos>), take the logits of the last position and their argmax over the "
                 f"vocabulary (dim=-1)")
    return len(cases)


# -- the training step -------------------------------------------------------------------------

def train_step_test_model(seed: int = 0) -> Transformer:
    """A tiny Transformer (source vocabulary 13, target 11, d_model 12, 3 heads, one layer each)
    with dropout 0.3, so that a step in eval mode (dropout off) differs from one in train mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = TransformerConfig(src_vocab_size=13, tgt_vocab_size=11, d_model=12, num_heads=3, num_layers=1,
                                   d_ff=20, dropout=0.3, max_len=16)
        return Transformer(config)


def _step_batches(n: int = 2) -> list[Batch]:
    """``n`` padded batches of 3 sources (S=7) and targets (T=5), fixed by a seed."""
    g = torch.Generator().manual_seed(5)
    batches = []
    for _ in range(n):
        src = torch.randint(4, 13, (3, 7), generator=g)
        src[1, 5:] = 0                                                         # padding in one source
        tgt_out = torch.randint(4, 11, (3, 5), generator=g)
        tgt_out[:, -1] = EOS_ID
        tgt_out[2, 3:] = torch.tensor([EOS_ID, 0])                             # a shorter target, padded
        batches.append(Batch(src, shift_right(tgt_out, BOS_ID), tgt_out))
    return batches


def _teacher_forced_loss(model, batch) -> torch.Tensor:
    """The loss_fn the check passes: lesson 08's teacher-forced, label-smoothed loss."""
    logits = model(batch.src, batch.tgt_in)                                    # (B, T, V)
    return label_smoothed_cross_entropy(logits, batch.tgt_out, smoothing=0.1, pad_id=model.config.pad_id)


#: (what the case is, optimiser, clip_norm, steps). SGD makes every change of the gradient show in the
#: update (Adam's first step hardly depends on the gradient's scale); the small clip_norm of the first
#: case is far below the gradient norm, so clipping matters there; the second never clips, so doubled
#: gradients show; two steps show what one step leaves behind (gradients, the learning rate).
#: AdamW runs with eps=1e-4, not the lesson's 1e-9: some gradients are zero in exact arithmetic (the
#: key projection's bias: softmax ignores a constant added to every score) and ~1e-9 of rounding noise
#: in floating point, and with eps=1e-9 Adam moves such a weight by a whole learning rate in the
#: noise's direction. A correct step that sums in another order (clipping by hand, another CPU's
#: kernels) would then be rejected.
_STEP_CASES = [("one SGD step with clip_norm=0.05 (far below the gradient norm)", "sgd", 0.05, 1),
               ("two SGD steps with momentum and clip_norm=1000 (nothing to clip)", "momentum", 1000.0, 2),
               ("two AdamW steps (betas and weight decay as in the lesson, eps=1e-4), clip_norm=1.0", "adamw", 1.0, 2)]


def _optimizer(kind: str, model) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    if kind == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), betas=(0.9, 0.98), eps=1e-4, weight_decay=0.01)
        return optimizer, lr_scheduler(optimizer, lambda step: 0.01 * (step + 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9 if kind == "momentum" else 0.0)
    # a warm-up: every step has its own rate, and no rate is twice another (which doubled gradients would mimic)
    return optimizer, lr_scheduler(optimizer, lambda step: 0.1 * (step + 2))


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _run_steps(step: Callable, kind: str, clip_norm: float, steps: int):
    """Run ``step(model, batch, loss_fn, optimizer, scheduler, clip_norm)`` ``steps`` times on a fresh
    tiny model (put in eval mode before each step, as after an evaluation; dropout seeded the same
    for every version). Returns the parameters after each step and what each call returned."""
    model = train_step_test_model()
    optimizer, scheduler = _optimizer(kind, model)
    params, returned = [], []
    for i, batch in enumerate(_step_batches(steps)):
        model.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(100 + i)
            returned.append(step(model, batch, _teacher_forced_loss, optimizer, scheduler, clip_norm))
        params.append(_flat(model))
    return params, returned


def _wrong_step(mistake: str):
    """The reference step with one typical mistake, for diagnoses."""
    def step(model, batch, loss_fn, optimizer, scheduler, clip_norm):
        model.train(mistake != "eval")
        if mistake != "no zero_grad":
            optimizer.zero_grad()
        loss = loss_fn(model, batch)
        loss.backward(retain_graph=mistake == "backward twice")
        if mistake == "backward twice":
            loss.backward()
        if mistake == "scheduler first":
            scheduler.step()
        params = list(model.parameters())
        if mistake == "clip_grad_value_":
            torch.nn.utils.clip_grad_value_(params, clip_norm)
        elif mistake == "clip to 1.0":
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        elif mistake != "no clipping":
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        if mistake != "no optimizer step":
            optimizer.step()
        if mistake not in ("scheduler first", "no scheduler step"):
            scheduler.step()
        return loss.item()
    return step


def _gradient_norm() -> float:
    model = train_step_test_model().train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(100)
        _teacher_forced_loss(model, _step_batches(1)[0]).backward()
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")))


_STEP_ORDER = ("model.train(); optimizer.zero_grad(); loss = loss_fn(model, batch); loss.backward(); "
               "torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm); optimizer.step(); scheduler.step(); "
               "return loss.item()")


def _step_mistakes(clip_norm: float) -> dict[str, str]:
    """mistake -> what the learner reads."""
    return {
        "eval": "the parameters moved as if dropout were off: the step ran in eval mode. Start the step with "
                "model.train(): the model may come from an evaluation, and model.eval() switches dropout off "
                "(train() and eval() only set the mode; they do not train or evaluate anything)",
        "no optimizer step": "the parameters did not change: optimizer.step() is missing, or the gradients were "
                             "cleared (zero_grad) between loss.backward() and optimizer.step(). zero_grad comes "
                             "before the backward pass, optimizer.step() after it",
        "scheduler first": "the update used the learning rate of the *next* step: scheduler.step() ran before "
                           "optimizer.step(). The scheduler sets the rate for the step after this one, so call it "
                           "last, after optimizer.step()",
        "no scheduler step": "the second step used the first step's learning rate: call scheduler.step() once "
                             "per step, after optimizer.step()",
        "no clipping": f"the gradients were not clipped before the update: their norm is far above "
                       f"clip_norm={clip_norm}, and the parameters moved as far as the unclipped gradient says. "
                       f"Call torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm) after loss.backward() "
                       f"and *before* optimizer.step() (clipping after the step, or not at all, changes nothing "
                       f"of this update)",
        "clip to 1.0": f"the gradients were clipped to a norm of 1.0, not to clip_norm={clip_norm}: pass the "
                       f"argument, clip_grad_norm_(model.parameters(), clip_norm)",
        "clip_grad_value_": "clip_grad_value_ clips every entry of the gradient on its own, which changes its "
                            "direction: clip the global norm, torch.nn.utils.clip_grad_norm_(model.parameters(), "
                            "clip_norm), which scales the whole gradient down",
        "no zero_grad": "the second step moved the parameters by the first step's gradients plus its own: "
                        "loss.backward() *adds* to every .grad, so without optimizer.zero_grad() (before the "
                        "backward pass) the gradients pile up from step to step",
        "backward twice": "the gradients are twice what they should be: loss.backward() ran twice (with "
                          "retain_graph=True), and backward adds to .grad. Call it once per step",
    }


def _explain_step_error(error: BaseException) -> str | None:
    text = str(error)
    if "backward through the graph a second time" in text:
        return ("loss.backward() ran twice: the first call frees the graph it went through, and a second "
                "backward adds the gradients again anyway. Call loss.backward() once per step")
    if "does not require grad" in text:
        return ("loss.backward() needs the loss tensor with its graph: call it on what loss_fn(model, batch) "
                "returned (not on loss.item() or loss.detach(), and not under torch.no_grad())")
    return None


def _check_returned(got, expected: float, where: str) -> None:
    if isinstance(got, torch.Tensor):
        if got.requires_grad:
            fail(f"{where} train_step returned the loss tensor, still attached to its graph: return "
                 f"loss.item(), a Python float. A tensor with a graph keeps the whole step's activations "
                 f"alive for as long as you keep the loss (in a list of losses: every step's), and memory grows")
        fail(f"{where} train_step returned a tensor ({describe(got)}): return loss.item(), a Python float")
    if got is None:
        fail(f"{where} train_step returned None: end it with return loss.item()")
    if not isinstance(got, float):
        fail(f"{where} train_step returned {describe(got)}: return loss.item(), a Python float")
    if not math.isclose(got, expected, rel_tol=1e-4, abs_tol=1e-5):
        fail(f"{where} train_step returned {got:.6g}, but the batch's loss before the update is {expected:.6g}: "
             f"return loss.item() of the loss the step computed (one forward pass), not another one")


@exercise(reference=train_step)
def check_train_step(fn):
    for case, kind, clip_norm, steps in _STEP_CASES:
        def learner(*args, case=case):
            return call(fn, *args, case=case, trains=True, explain=_explain_step_error)
        got_params, got_returned = _run_steps(learner, kind, clip_norm, steps)
        expected_params, expected_returned = _run_steps(train_step, kind, clip_norm, steps)
        for i, (got, expected) in enumerate(zip(got_params, expected_params)):
            where = f"on {case}, after step {i + 1}:"
            if not close(got, expected, atol=1e-5, rtol=1e-4):
                mistakes = _step_mistakes(clip_norm)
                for mistake, message in mistakes.items():
                    wrong = _run_steps(_wrong_step(mistake), kind, clip_norm, steps)[0][i]
                    if close(got, wrong, atol=1e-5, rtol=1e-4):
                        fail(f"{where} {message}")
                fail(f"{where} the parameters differ from the reference step's ({where_wrong(got, expected)}, "
                     f"over all parameters flattened). The step is: {_STEP_ORDER}")
            _check_returned(got_returned[i], expected_returned[i], where)
    return len(_STEP_CASES)
