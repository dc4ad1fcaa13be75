"""Benchmark: our MultiHeadAttention against PyTorch's nn.MultiheadAttention on the CPU.

    .venv/bin/python benchmarks/attention.py            # the full run (about a minute)
    .venv/bin/python benchmarks/attention.py --quick    # a fast smoke run (a few seconds)

It times one forward + backward pass of self-attention at B=32, T=128, D=256, H=8 (the sizes
of the course's targets) for

* ``fast``: ``MultiHeadAttention(..., need_weights=False)``, which calls PyTorch's fused
  ``F.scaled_dot_product_attention``;
* ``explicit``: ``need_weights=True``, the lesson's softmax(Q K^T / sqrt(d_k)) V written out,
  which also keeps the (B, H, T, T) weights for plotting;

each against ``nn.MultiheadAttention(batch_first=True)`` with the same weights and
``need_weights=False`` (PyTorch's fastest setting), with no mask and with a causal mask. Runs
are interleaved (ours, theirs, ours, ...) so that a busy machine slows both alike, and the
medians are compared. It prints the ratios and the course's targets (fast <= 1.2x, explicit
<= 2x); it never fails: timings depend on the machine, so the test suite asserts none.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transformer_lib.masks import causal_mask, to_torch_mask  # noqa: E402
from transformer_lib.multi_head_attention import MultiHeadAttention  # noqa: E402
from transformer_lib.torch_interop import copy_mha  # noqa: E402
from transformer_lib.runtime import NUM_THREADS  # noqa: E402

TARGETS = {"fast": 1.2, "explicit": 2.0}


def _step(fn, x: torch.Tensor, grad: torch.Tensor) -> float:
    """Seconds of one forward + backward pass (gradients of the parameters and of x)."""
    x.grad = None
    start = time.perf_counter()
    out = fn(x)
    out.backward(grad)
    return time.perf_counter() - start


def run(B: int = 32, T: int = 128, D: int = 256, H: int = 8, repeats: int = 30, warmup: int = 3,
        threads: int | None = NUM_THREADS, verbose: bool = True) -> dict[str, float]:
    """Time every configuration ``repeats`` times, interleaved; return the ratios of medians.

    Returns:
        ``{"fast": r, "explicit": r, "fast, causal mask": r, "explicit, causal mask": r}``, each
        the median time of ours divided by the median time of ``nn.MultiheadAttention``.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    ours = MultiHeadAttention(D, H)
    theirs = copy_mha(ours, nn.MultiheadAttention(D, H, batch_first=True))
    x = torch.randn(B, T, D, requires_grad=True)
    grad = torch.randn(B, T, D)
    mask = causal_mask(T)                      # ours: True = may attend
    torch_mask = to_torch_mask(mask)           # PyTorch's: True = blocked

    # the paths compute the same thing: check before timing
    with torch.no_grad():
        ref = theirs(x, x, x, need_weights=False)[0]
        for need in (False, True):
            got = ours(x, x, x, need_weights=need)[0]
            assert torch.allclose(got, ref, atol=1e-5), "our layer differs from nn.MultiheadAttention"

    runs = {
        "ours fast": lambda x: ours(x, x, x, need_weights=False)[0],
        "ours explicit": lambda x: ours(x, x, x, need_weights=True)[0],
        "torch": lambda x: theirs(x, x, x, need_weights=False)[0],
        "ours fast, causal mask": lambda x: ours(x, x, x, mask=mask, need_weights=False)[0],
        "ours explicit, causal mask": lambda x: ours(x, x, x, mask=mask, need_weights=True)[0],
        "torch, causal mask": lambda x: theirs(x, x, x, attn_mask=torch_mask, need_weights=False)[0],
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(warmup + repeats):
        order = list(runs.items())
        if i % 2:                              # alternate the order: neither side always goes first
            order.reverse()
        for name, fn in order:
            t = _step(fn, x, grad)
            if i >= warmup:
                times[name].append(t)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    ratios = {}
    for suffix in ("", ", causal mask"):
        for path in ("fast", "explicit"):
            ratios[path + suffix] = median[f"ours {path}{suffix}"] / median[f"torch{suffix}"]
    if verbose:
        print(f"MultiHeadAttention forward+backward vs nn.MultiheadAttention(need_weights=False), CPU, "
              f"{torch.get_num_threads()} threads, B={B} T={T} D={D} H={H}, median of {repeats} interleaved runs")
        for suffix in ("", ", causal mask"):
            label = "nn.MultiheadAttention" + suffix
            print(f"  {label:<36} {median['torch' + suffix] * 1e3:9.2f} ms")
            for path in ("fast", "explicit"):
                name = path + suffix
                verdict = "meets" if ratios[name] <= TARGETS[path] else "MISSES"
                label = f"ours, {name}"
                print(f"  {label:<36} {median[f'ours {name}'] * 1e3:9.2f} ms   ratio {ratios[name]:.2f}x "
                      f"(target <= {TARGETS[path]}x: {verdict})")
    return ratios


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per configuration (default 30)")
    parser.add_argument("--threads", type=int, default=NUM_THREADS, help=f"CPU threads (default {NUM_THREADS})")
    args = parser.parse_args(argv)
    if args.quick:
        return run(B=4, T=32, D=64, H=4, repeats=args.repeats or 5, warmup=1, threads=args.threads)
    return run(repeats=args.repeats or 30, threads=args.threads)


if __name__ == "__main__":
    main()
