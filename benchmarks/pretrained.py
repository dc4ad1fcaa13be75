"""Benchmark: sentence embeddings of 1 000 sentences, ours against sentence-transformers (CPU).

    .venv/bin/python benchmarks/pretrained.py                 # the course's environment: our time only
    /tmp/refenv/bin/python benchmarks/pretrained.py           # where sentence-transformers is installed: the ratio
    .venv/bin/python benchmarks/pretrained.py --quick         # 200 sentences, fewer repeats

The course does not install sentence-transformers (it is heavy); to compare, run this script with
the Python of the environment that ``tools/make_reference_embeddings.py`` describes (torch 2.13.0
CPU + sentence-transformers + the weights package), which imports ``transformer_lib`` from this
checkout. Both sides embed the same sentences with the same weights from the installed weights
package, 2 threads, batches of 32 (sentence-transformers' default), after one warm-up run; runs
are interleaved (ours, theirs, theirs, ours, ...) so a busy machine slows both alike, and the
medians are compared. Target: ours <= 1.2x the reference's time. The embeddings are compared too.
The time includes tokenization (ours: pure Python; theirs: the Rust ``tokenizers``). Never fails.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transformer_lib.pretrained import model_dir  # noqa: E402
from transformer_lib.sentence_encoder import SentenceEncoder, load_corpus  # noqa: E402
from transformer_lib.runtime import NUM_THREADS  # noqa: E402

TARGET = 1.2


def sentences(n: int) -> list[str]:
    """``n`` varied sentences of 1-3 corpus sentences each (10-60 tokens)."""
    corpus, _ = load_corpus()
    out = []
    for i in range(n):
        parts = [corpus[i % len(corpus)]] + [corpus[(7 * i + 13 * k) % len(corpus)] for k in range(i % 3)]
        out.append(" ".join(parts))
    return out


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 sentences, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per side (default 5)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=NUM_THREADS, help=f"CPU threads (default {NUM_THREADS})")
    args = parser.parse_args(argv)
    n, repeats = (200, args.repeats or 2) if args.quick else (1000, args.repeats or 5)
    torch.set_num_threads(args.threads)
    texts = sentences(n)
    ours = SentenceEncoder()
    run_ours = lambda: ours.encode(texts, batch_size=args.batch_size)  # noqa: E731
    runs = {"ours": run_ours}
    if importlib.util.find_spec("sentence_transformers") is not None:
        import os
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        reference = SentenceTransformer(str(model_dir()), device="cpu")
        runs["sentence-transformers"] = lambda: reference.encode(texts, batch_size=args.batch_size,
                                                                 convert_to_tensor=True)
    else:
        print("sentence-transformers is not installed here: timing ours only (see the docstring to compare)")
    results = {name: fn() for name, fn in runs.items()}                     # warm-up (and the embeddings)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats):
        order = list(runs.items())
        if i % 2:
            order.reverse()
        for name, fn in order:
            times[name].append(_time(fn))
    median = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"sentence embeddings of {n} sentences, CPU, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"median of {repeats} interleaved runs")
    for name, t in median.items():
        print(f"  {name:<22} {t:7.2f} s   ({n / t:6.0f} sentences/s)")
    ratios = {}
    if "sentence-transformers" in median:
        ratio = ratios["ours / sentence-transformers"] = median["ours"] / median["sentence-transformers"]
        verdict = "meets" if ratio <= TARGET else "MISSES"
        diff = (results["ours"] - results["sentence-transformers"].float().cpu()).abs().max().item()
        print(f"  ratio ours / sentence-transformers: {ratio:.2f}x (target <= {TARGET}x: {verdict}); "
              f"max |difference| of the embeddings {diff:.1e}")
    return ratios


if __name__ == "__main__":
    main()
