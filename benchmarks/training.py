"""Benchmark: the cost of one training step of lesson 08 (date normalisation) on the CPU.

    .venv/bin/python benchmarks/training.py            # the full run (about a minute)
    .venv/bin/python benchmarks/training.py --quick    # a fast smoke run (a few seconds)
    .venv/bin/python benchmarks/training.py --profile  # also print torch.profiler's top operators

It times the lesson's training step (forward with teacher forcing, label-smoothed loss,
backward, gradient clipping, AdamW, learning-rate schedule) on the lesson's model and batches,
in several variants: random vs length-bucketed batches, 1 vs 2 threads, and a few model sizes.
It reports milliseconds per step as wall-clock time and as CPU (process) time. On a machine
shared with other work the wall-clock time is inflated (and with 2 threads so is the CPU time:
threads spin while they wait for each other), so the 1-thread CPU time per step is the most
robust estimate of the step's cost. It prints numbers and never fails.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transformer_lib.data import DateTask, padding_fraction  # noqa: E402
from transformer_lib.multi_head_attention import fused_attention  # noqa: E402
from transformer_lib.training import (label_smoothed_cross_entropy, lr_scheduler, noam_lr,  # noqa: E402
                                      seq2seq_loss)
from transformer_lib.transformer import Transformer, TransformerConfig  # noqa: E402


def make_step(task: DateTask, batch_size: int, bucket: bool, **config_changes):
    torch.manual_seed(0)
    config = TransformerConfig.tiny(len(task.src_tokenizer), len(task.tgt_tokenizer), dropout=0.0, max_len=32,
                                    **config_changes)
    model = Transformer(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), betas=(0.9, 0.98), eps=1e-9, weight_decay=0.01)
    scheduler = lr_scheduler(optimizer, lambda s: noam_lr(s, config.d_model, 100, 0.5))
    stream = task.batch_stream(batch_size, bucket=bucket, seed=0)
    loss_fn = seq2seq_loss(0.1, loss=label_smoothed_cross_entropy)

    def step():
        with fused_attention(model):                          # as training.train does
            loss = loss_fn(model, stream())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    return step, model


def measure(step, warmup: int, steps: int) -> tuple[float, float]:
    for _ in range(warmup):
        step()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.process_time() - cpu) / steps, 1000 * (time.perf_counter() - wall) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, for a smoke test")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators")
    args = parser.parse_args()
    warmup, steps = (2, 5) if args.quick else (10, 60)
    task = DateTask(n_train=20_000)
    print(f"torch {torch.__version__}; {steps} steps per variant after {warmup} warm-up steps; batch 128")
    print(f"padding: random batches {padding_fraction(task.batches('train', 128, shuffle=True, bucket=False)):.1%}, "
          f"bucketed {padding_fraction(task.batches('train', 128, shuffle=True)):.1%} of the source positions\n")
    variants = [
        ("lesson: tiny (D=64, H=4, 2+2 layers, d_ff=256), bucketed", dict(bucket=True)),
        ("same, random batches (padded)", dict(bucket=False)),
        ("H=2, d_ff=128, bucketed", dict(bucket=True, num_heads=2, d_ff=128)),
        ("1+1 layers, bucketed", dict(bucket=True, num_layers=1)),
    ]
    print(f"{'variant':58} {'threads':>7} {'wall ms/step':>13} {'CPU ms/step':>12}")
    results = {}
    for name, kw in variants:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            changes = {k: v for k, v in kw.items() if k != "bucket"}
            step, _ = make_step(task, 128, kw["bucket"], **changes)
            cpu, wall = measure(step, warmup, steps)
            results[name, threads] = cpu, wall
            print(f"{name:58} {threads:>7} {wall:13.1f} {cpu:12.1f}")
    base = results[variants[0][0], 1][0]
    print("\n1-thread CPU time per step relative to the lesson's setting: "
          + ", ".join(f"{name.split(',')[0]}: {results[name, 1][0] / base:.2f}x" for name, _ in variants[1:]))
    print(f"estimated lesson training time (1 000 steps) from the 1-thread CPU time: {base:.0f} s "
          f"(2 threads were about 25 % faster on a quiet 2-core machine, and many times slower while other "
          f"programs kept the cores busy)")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        torch.set_num_threads(1)
        step, _ = make_step(task, 128, True)
        measure(step, warmup, 1)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(min(steps, 20)):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
