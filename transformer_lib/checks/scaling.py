"""Checks for lesson 14's exercises: the FLOPs of a training step, the hand-written gradient all-reduce."""
from __future__ import annotations

import linecache
import numbers

import torch

from ..gpt import GPT, GPTConfig, causal_lm_loss
from ..scaling import average_gradients, gpt3_config, launch, pack_function, parameter_counts, \
    training_flops_per_token, unpack_function
from ._core import CheckFailed, call, describe, exercise, fail

__all__ = ["check_training_flops_per_token", "check_average_gradients"]


# ---- FLOPs per token -------------------------------------------------------------------------

def _flop_cases():
    tiny = GPTConfig.tiny
    return [
        (tiny(11, d_model=12, num_heads=3, num_layers=1, d_ff=20, max_len=16), 5),
        (tiny(7, d_model=6, num_heads=2, num_layers=3, d_ff=30, max_len=16), 9),
        (tiny(13, d_model=20, num_heads=4, num_layers=2, d_ff=36, max_len=32), 1),
        (tiny(99, d_model=64, num_heads=4, num_layers=2, d_ff=256, max_len=128), 64),
        (gpt3_config(), 2048),
    ]


def _flop_mistakes(c: GPTConfig, T: int) -> dict[str, int]:
    """What typical wrong formulas give, in the order they are tried."""
    L, D, F, V, H = c.num_layers, c.d_model, c.d_ff, c.vocab_size, c.num_heads
    blocks = L * (4 * D * D + 2 * D * F)
    weights = blocks + V * D
    attention = 12 * L * T * D
    right = 6 * weights + attention
    return {
        "it counts the forward pass only (2 FLOPs per weight and 4 T D per layer for attention). Training also "
        "runs backward, which costs twice the forward: 6 per weight, 12 L T D for attention": 2 * weights + 4 * L * T * D,
        "it counts multiply-adds, not FLOPs: a multiply-add is 2 floating-point operations, so double everything":
            right // 2,
        "the attention term is missing: q k^T and weights @ v are matrix products too, 12 * L * T * D FLOPs per "
        "token (forward and backward) that grow with the context length T": 6 * weights,
        "the attention term counts the forward pass only (4 L T D): backward costs twice the forward, "
        "12 * L * T * D in all": 6 * weights + 4 * L * T * D,
        "the attention term is halved for the causal mask: the explicit kernel (and FlopCounterMode) computes all "
        "T x T scores and masks half of them afterwards, so count 12 * L * T * D": 6 * weights + 6 * L * T * D,
        "the attention term is per sequence (T^2), not per token: divide it by T, 12 * L * T * D per token":
            6 * weights + 12 * L * T * T * D,
        "the attention term uses d_k = D / H: the H heads together multiply D features, 12 * L * T * D":
            6 * weights + 12 * L * T * (D // H),
        "the attention term is multiplied by the number of heads: each head multiplies only d_k = D / H features, "
        "all heads together D: 12 * L * T * D": 6 * weights + 12 * L * T * D * H,
        "the output layer is missing: the final V x D matrix product scores every token, 6 * V * D FLOPs per "
        "token (with tied weights it is the embedding matrix, used as a matrix product)": 6 * blocks + attention,
        "the embedding look-up is counted as a matrix product: picking a row multiplies nothing. Only the output "
        "layer (V x D) costs 6 * V * D": 6 * (weights + V * D) + attention,
        "the position table is counted: adding a learned position vector is not a matrix product, it costs "
        "nothing here": 6 * (weights + c.max_len * D) + attention,
        "the position vectors of the T tokens are counted: adding them is not a matrix product":
            6 * (weights + T * D) + attention,
        "it assumes d_ff = 4 * d_model: use config.d_ff, the two feed-forward matrices have 2 * D * d_ff weights":
            6 * (L * 12 * D * D + V * D) + attention,
        "one attention projection is missing: a block has four D x D matrices (w_q, w_k, w_v, w_o)":
            6 * (L * (3 * D * D + 2 * D * F) + V * D) + attention,
        "one feed-forward matrix is missing: a block has two, D x d_ff (linear1) and d_ff x D (linear2)":
            6 * (L * (4 * D * D + D * F) + V * D) + attention,
        "it uses 4 FLOPs per weight: forward costs 2 and backward 4 (the gradients of the input AND of the "
        "weight), 6 in all": 4 * weights + 8 * L * T * D,
        "it multiplies by all the parameters (biases, LayerNorms, embeddings included): only the weights of "
        "matrix products count, L * (4 D^2 + 2 D d_ff) + V * D":
            6 * parameter_counts(c)["total"] + attention,
        "it is the FLOPs of a whole sequence (T tokens): return the FLOPs per token": right * T,
    }


def _as_number(got, case):
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, numbers.Real):
        fail(f"on {case} your function returned {describe(got)}: return a number (an int)")
    return got


@exercise(reference=training_flops_per_token)
def check_training_flops_per_token(fn):
    cases, answers = _flop_cases(), []
    for config, T in cases:
        c = config
        case = (f"L={c.num_layers}, D={c.d_model}, H={c.num_heads}, d_ff={c.d_ff}, V={c.vocab_size}, "
                f"max_len={c.max_len} and T={T}")
        answers.append((case, _as_number(call(fn, config, T, case=case), case), training_flops_per_token(config, T)))
    wrong = [(case, got, want) for case, got, want in answers if abs(got - want) > 1e-9 * want]
    if not wrong:
        return len(cases)
    case, got, want = wrong[0]
    mistakes = [_flop_mistakes(config, T) for config, T in cases]
    for diagnosis in mistakes[0]:                  # a mistake explains every answer, right or wrong
        if all(abs(g - m[diagnosis]) <= 1e-9 * max(abs(m[diagnosis]), 1) for (_, g, _), m in zip(answers, mistakes)):
            fail(f"{diagnosis} (on {case}: got {got:,.0f}, expected {want:,})")
    fail(f"on {case} your function returned {got:,.0f}, expected {want:,}: 6 FLOPs per weight of a matrix "
         f"product, 6 * (L * (4 D^2 + 2 D d_ff) + V D), plus 12 * L * T * D for attention")


# ---- the hand-written all-reduce ---------------------------------------------------------------

def _sync_cases():
    """(config, batch rows, T, seed) of each case: a tied GPT and an untied one, odd sizes."""
    return [
        (GPTConfig.tiny(11, d_model=12, num_heads=3, num_layers=2, d_ff=20, max_len=16), 6, 7, 1),
        (GPTConfig.tiny(13, d_model=10, num_heads=2, num_layers=1, d_ff=14, max_len=16, tie_weights=False), 4, 5, 2),
    ]


def _case_model_and_batch(config, rows, T, seed):
    with torch.random.fork_rng(devices=[]):                  # the lesson's random state stays as it was
        torch.manual_seed(seed)
        model = GPT(config).train()
    ids = torch.randint(0, config.vocab_size, (rows, T), generator=torch.Generator().manual_seed(seed))
    return model, ids


def _grads(model):
    return {name: None if p.grad is None else p.grad.detach().clone() for name, p in model.named_parameters()}


def _learner_line(error: BaseException, filename: str) -> int | None:
    tb, line = error.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _sync_worker(rank: int, world_size: int, packed: dict) -> list[dict]:
    """In each worker: the gradient of this rank's rows, then the learner's function on it."""
    import torch.distributed as dist
    from torch.distributed import distributed_c10d
    fn_calls: list[str] = []
    original = distributed_c10d.all_reduce
    pointers: dict[int, str] = {}

    def recording_all_reduce(tensor, *args, **kwargs):
        fn_calls.append(pointers.get(tensor.data_ptr(), "other") if isinstance(tensor, torch.Tensor) else "other")
        return original(tensor, *args, **kwargs)

    dist.all_reduce = distributed_c10d.all_reduce = recording_all_reduce
    fn = unpack_function(packed)
    results = []
    for config, rows, T, seed in _sync_cases():
        model, ids = _case_model_and_batch(config, rows, T, seed)
        share = rows // world_size
        shard = ids[rank * share:(rank + 1) * share]                                 # (rows / W, T)
        causal_lm_loss(model(shard), shard).backward()
        local = _grads(model)
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        pointers.clear()
        pointers.update({p.data_ptr(): "parameter" for p in model.parameters()})
        pointers.update({p.grad.data_ptr(): "gradient" for p in model.parameters()})
        fn_calls.clear()
        try:
            fn(model)
        except Exception as e:  # noqa: BLE001 - reported to the learner by the check
            results.append({"error": (type(e).__name__, str(e), fn.__code__.co_filename,
                                      _learner_line(e, fn.__code__.co_filename))})
            break
        changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
        results.append({"local": local, "after": _grads(model), "changed": changed, "calls": list(fn_calls)})
    return results


def _expected_grads(config, rows, T, seed):
    model, ids = _case_model_and_batch(config, rows, T, seed)
    causal_lm_loss(model(ids), ids).backward()
    return _grads(model)


def _all_close(got: dict, want: dict, scale: float = 1.0) -> bool:
    return all(got[n] is not None and torch.allclose(got[n], want[n] * scale, atol=1e-7, rtol=1e-4) for n in want)


def _probe_here(fn) -> None:
    """Call ``fn`` once in this process, outside any process group, before any worker starts: the
    untouched stub stops the check as "not implemented yet", and an error of the learner's code that
    happens before it reaches ``torch.distributed`` is shown at once, with its line. The error that
    ``torch.distributed`` raises here (there is no process group in this process) is expected: the
    workers judge the rest."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return
    config, rows, T, seed = _sync_cases()[0]
    model, ids = _case_model_and_batch(config, rows, T, seed)
    causal_lm_loss(model(ids), ids).backward()
    try:
        call(fn, model, case="a model outside any process group")
    except CheckFailed as e:
        if e.learner_error is None or "process group" not in str(e.learner_error):
            raise


@exercise(reference=average_gradients)
def check_average_gradients(fn):
    _probe_here(fn)
    try:
        packed = pack_function(fn)
    except TypeError as e:
        fail(str(e))
    world_size = 2
    outputs = [o["result"] for o in launch(_sync_worker, world_size, (packed,), timeout=180.0)]
    for index, (config, rows, T, seed) in enumerate(_sync_cases()):
        case = f"a GPT with D={config.d_model}, {rows} rows of {T} tokens split over {world_size} processes"
        per_rank = [o[index] for o in outputs]
        for r in per_rank:
            if "error" in r:
                name, message, filename, line = r["error"]
                where = f"\n    at line: {linecache.getline(filename, line).strip()}" if line else ""
                hint = (" (every process must call dist.all_reduce on the same tensors in the same order)"
                        if "timed out" in message.lower() or "timeout" in message.lower() else "")
                fail(f"your function raised {name} on {case} (in a worker process): {message}{hint}{where}")
        want = _expected_grads(config, rows, T, seed)
        got = [r["after"] for r in per_rank]
        local = [r["local"] for r in per_rank]
        calls = {c for r in per_rank for c in r["calls"]}
        changed = sorted({n for r in per_rank for n in r["changed"]})
        if any(g[n] is None for g in got for n in g):
            fail(f"after your function some gradients are None on {case}: average p.grad in place "
                 f"(or assign a tensor to it), never set it to None")
        if all(_all_close(g, want) for g in got):
            if changed:
                fail(f"the gradients are right, but your function also changed the parameters {changed[:3]} on "
                     f"{case}: only p.grad may change; the optimizer updates the weights")
            continue
        if "parameter" in calls:
            fail(f"it all-reduces the parameters (p or p.data) instead of their gradients: pass p.grad to "
                 f"dist.all_reduce (on {case})")
        if all(_all_close(g, want, 2.0) for g in got):
            fail(f"the gradients are summed over the processes but not averaged: after dist.all_reduce (a sum), "
                 f"divide p.grad by dist.get_world_size() (on {case})")
        if all(_all_close(g, want, 0.5) for g in got):
            fail(f"the gradients are divided by the world size twice: the all-reduced sum needs one division by "
                 f"dist.get_world_size() (on {case})")
        if all(_all_close(g, l, 0.5) for g, l in zip(got, local)):
            fail(f"each process divides its own gradient by the world size but never adds the others': call "
                 f"dist.all_reduce(p.grad) before dividing (on {case})")
        if all(_all_close(g, l) for g, l in zip(got, local)):
            if "other" in calls:
                fail(f"dist.all_reduce ran on a copy of the gradients, and p.grad kept each process's own gradient: "
                     f"all_reduce changes the tensor you pass in place, so pass p.grad itself (on {case})")
            fail(f"the gradients were not all-reduced: each process kept the gradient of its own rows, so the "
                 f"processes would drift apart. Call dist.all_reduce(p.grad) for every parameter (on {case})")
        if any(not all(torch.equal(got[0][n], g[n]) for n in g) for g in got[1:]):
            fail(f"the processes ended with different gradients on {case}: every process must all-reduce the "
                 f"gradient of every parameter, the same way")
        worst = max((g[n] - want[n]).abs().max().item() for g in got for n in want)
        fail(f"the averaged gradients differ from the gradient of the whole batch (largest difference {worst:.3g}) "
             f"on {case}: all-reduce every p.grad (a sum), then divide it by dist.get_world_size()")
    return len(_sync_cases())
