"""Lesson 14: scaling up. Where compute and memory go, a measured scaling law, mixed precision,
and data-parallel training with ``torch.distributed``.

Legend: B batch, T context length, D = d_model, H heads, L layers (num_layers), F = d_ff,
V vocabulary size, N parameters, W world size (the number of worker processes).

Compute. Every weight of a matrix product does one multiply-add (2 FLOPs) per token going
forward, and two going backward (the gradient of the input and the gradient of the weight).
Attention multiplies activations by activations: ``q k^T`` and ``weights @ v``, T * D
multiply-adds per token and layer each. Embedding look-ups multiply nothing::

    FLOPs per token = 6 * (L * (4 D^2 + 2 D F) + V D)  +  12 * L * T * D
                      weights: the "6 N" rule             attention: the T^2 term (per sequence)

Memory. Training keeps, per parameter, the weight, its gradient and Adam's two moments; mixed
precision adds a float32 master copy. Activations saved for the backward pass grow with B * T,
the KV cache of generation with B * T * L * D.

Data parallelism. W processes hold the same model; each computes the gradient of the mean loss
on its B / W rows of the batch. The mean of those W gradients is the gradient of the mean loss
on all B rows, so after an all-reduce (sum over processes) and a division by W every process
takes the same step that one process with the whole batch would take::

    (1 / W) * sum_r grad L_r = grad L        (L_r: mean loss on shard r, all shards of equal size)
"""
from __future__ import annotations

import dataclasses
import dis
import functools
import importlib
import marshal
import math
import os
import pickle
import resource
import socket
import sys
import tempfile
import time
import traceback
import types
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import wait as wait_for_processes
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .gpt import GPT, GPTConfig, causal_lm_loss
from .multi_head_attention import fused_attention
from .runtime import SMOKE_STEPS, smoke_test_mode
from .utils import count_parameters
from .validation import check_positive_int, check_tensor

__all__ = [
    "gpt3_config", "matmul_parameters", "parameter_counts", "training_flops_per_token", "count_training_flops",
    "activation_numbers", "saved_activation_bytes", "training_memory", "zero_memory_per_device", "format_bytes",
    "PowerLaw", "fit_power_law", "compute_frontier", "text_windows", "held_out_loss",
    "autocast_dtype", "autocast_output_dtypes", "cpu_description", "peak_memory_mb",
    "average_gradients", "free_port", "launch", "WorkerError", "DataParallelRun", "train_data_parallel",
    "largest_difference", "pack_function", "unpack_function",
    "time_attention",
]


# ---- 1. where the compute goes -------------------------------------------------------------

def gpt3_config() -> GPTConfig:
    """GPT-3 175B (Brown et al. 2020, table 2.1): 96 layers, D = 12288, 96 heads, 2048 positions."""
    return GPTConfig(vocab_size=50257, d_model=12288, num_heads=96, num_layers=96, d_ff=4 * 12288,
                     max_len=2048, dropout=0.0)


def _check_config(config) -> GPTConfig:
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    return config


def matmul_parameters(config: GPTConfig) -> int:
    """Weights that take part in a matrix product for every token: per block the four D x D
    attention projections and the two D x F feed-forward matrices, plus the V x D output layer.
    Biases, LayerNorms and the embedding look-ups are not matrix products."""
    c = _check_config(config)
    return c.num_layers * (4 * c.d_model ** 2 + 2 * c.d_model * c.d_ff) + c.vocab_size * c.d_model


@functools.lru_cache(maxsize=64)
def parameter_counts(config: GPTConfig) -> Mapping[str, int]:
    """``{"total", "embedding", "non_embedding"}`` parameters of ``GPT(config)``.

    The model is built on the ``meta`` device (shapes only, no memory), so this works for GPT-3
    too. ``embedding`` counts the token table (tied to the output layer) and the position table;
    ``non_embedding`` is Kaplan et al.'s N.
    """
    c = _check_config(config)
    with torch.device("meta"):
        model = GPT(c)
    total = count_parameters(model)
    embedding = model.embed.weight.numel() + model.pos.weight.numel()
    return types.MappingProxyType({"total": total, "embedding": embedding, "non_embedding": total - embedding})


def training_flops_per_token(config: GPTConfig, T: int) -> int:
    """FLOPs of one training step (forward and backward) per token, counting matrix products only.

    Args:
        config: the GPT's :class:`~transformer_lib.gpt.GPTConfig`.
        T: the context length (tokens per sequence).

    Returns:
        ``6 * matmul_parameters(config) + 12 * L * T * D``: 2 FLOPs per weight forward and 4
        backward; attention's two products (``q k^T``, ``weights @ v``) cost ``2 T D`` each per
        token and layer forward, twice that backward. Equal to what
        ``torch.utils.flop_counter.FlopCounterMode`` counts for the explicit attention path.
    """
    c = _check_config(config)
    check_positive_int("T", T)
    return 6 * matmul_parameters(c) + 12 * c.num_layers * T * c.d_model


def count_training_flops(model: nn.Module, ids: torch.Tensor) -> tuple[int, dict[str, int]]:
    """Count the FLOPs of one forward and backward pass of the causal LM loss on ``ids (B, T)``.

    Runs ``model`` in eval mode with our attention on its explicit path of matrix products (the
    layers' default; the fused CPU kernel has no FLOP formula in PyTorch's counter) and leaves no
    gradients behind.

    Returns:
        ``(total, {operator: FLOPs})``.
    """
    from torch.utils.flop_counter import FlopCounterMode
    check_tensor("ids", ids, ndim=2, floating=False)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            causal_lm_loss(model(ids), ids).backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    by_op = {str(op).removeprefix("aten."): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return int(counter.get_total_flops()), by_op


# ---- 2. where the memory goes --------------------------------------------------------------

def activation_numbers(config: GPTConfig, batch_size: int, T: int) -> int:
    """Numbers the forward pass of a training step saves for the backward pass (an estimate).

    Per token and block: about 8 vectors of size D (the inputs of the two LayerNorms and of the
    projections, q, k, v and the attention output), 2 of size F (the GELU's input and output)
    and one number per head (the fused attention kernel keeps a log-sum-exp per query instead of
    the T x T weights); on top, 2 vectors of size D and the V log-probabilities of the loss::

        B * T * (L * (8 D + 2 F + H) + 2 D + V)

    Within about 1 % of what our GPT saves (see :func:`saved_activation_bytes`).
    """
    c = _check_config(config)
    check_positive_int("batch_size", batch_size)
    check_positive_int("T", T)
    per_token = c.num_layers * (8 * c.d_model + 2 * c.d_ff + c.num_heads) + 2 * c.d_model + c.vocab_size
    return batch_size * T * per_token


def saved_activation_bytes(model: nn.Module, ids: torch.Tensor) -> int:
    """Bytes of the tensors that autograd saves for the backward pass of the causal LM loss on
    ``ids`` (measured with ``torch.autograd.graph.saved_tensors_hooks``; each storage counted
    once, the parameters not at all). The model runs as ``training.train`` runs it: in training mode,
    its attention on the fused kernel (:func:`~transformer_lib.multi_head_attention.fused_attention`);
    nothing is back-propagated."""
    check_tensor("ids", ids, ndim=2, floating=False)
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    was_training = model.training
    model.train()
    try:
        with fused_attention(model), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = causal_lm_loss(model(ids), ids)
        del loss
    finally:
        model.train(was_training)
    return sum(storages.values())


def training_memory(config: GPTConfig, batch_size: int, T: int, mixed_precision: bool = False) -> dict[str, int]:
    """Bytes needed to train ``GPT(config)`` with Adam on a batch of ``batch_size`` sequences of
    ``T`` tokens, and for the KV cache of generating ``batch_size`` sequences of ``T`` tokens.

    Args:
        mixed_precision: ``False``: everything in float32 (4 bytes). ``True``: the recipe of
            large models (ZeRO, Rajbhandari et al. 2020): 16-bit weights, gradients,
            activations and KV cache, plus a float32 master copy of the weights for Adam's update.

    Returns:
        ``{"parameters", "gradients", "Adam moments (m, v)", "float32 master weights",
        "activations", "KV cache (generation)"}`` in bytes (the master weights are 0 in float32).
    """
    c = _check_config(config)
    n = parameter_counts(c)["total"]
    low = 2 if mixed_precision else 4
    return {
        "parameters": low * n,
        "gradients": low * n,
        "Adam moments (m, v)": 2 * 4 * n,
        "float32 master weights": 4 * n if mixed_precision else 0,
        "activations": low * activation_numbers(c, batch_size, T),
        "KV cache (generation)": low * 2 * c.num_layers * batch_size * T * c.d_model,
    }


def zero_memory_per_device(num_parameters: int, devices: int, stage: int) -> int:
    """Bytes of weights, gradients and optimizer state per device in mixed-precision Adam training
    (16 bytes per parameter in all) with ZeRO ``stage`` (Rajbhandari et al. 2020):

    * 0 (plain data parallelism, DDP): every device holds all 16 bytes per parameter;
    * 1: the optimizer state (12 bytes: master copy, m, v) is split across the devices;
    * 2: the gradients (2 bytes) too;
    * 3: the 16-bit weights too (FSDP's full sharding): 16 / devices bytes per parameter.
    """
    check_positive_int("num_parameters", num_parameters)
    check_positive_int("devices", devices)
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"stage must be 0, 1, 2 or 3, got {stage!r}")
    weights, grads, optimizer = 2 * num_parameters, 2 * num_parameters, 12 * num_parameters
    shard = lambda nbytes, sharded: nbytes / devices if sharded else nbytes  # noqa: E731
    return round(shard(weights, stage >= 3) + shard(grads, stage >= 2) + shard(optimizer, stage >= 1))


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``: powers of 1024, three significant digits."""
    if n < 0:
        raise ValueError(f"a number of bytes cannot be negative, got {n}")
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# ---- 3. a scaling law ------------------------------------------------------------------------

@dataclass(frozen=True)
class PowerLaw:
    """``y = scale * x ** -exponent`` (a straight line of slope ``-exponent`` on log-log axes)."""

    scale: float
    exponent: float

    def __call__(self, x):
        return self.scale * torch.as_tensor(x, dtype=torch.float64) ** -self.exponent

    def critical(self) -> float:
        """Kaplan et al.'s form ``y = (x_c / x) ** exponent``: returns ``x_c``."""
        return self.scale ** (1 / self.exponent)


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLaw:
    """Least-squares straight line through ``(log x, log y)``: ``y ≈ scale * x ** -exponent``.

    Args:
        x, y: at least two positive numbers each, as many of one as of the other.
    """
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    y = torch.as_tensor(y, dtype=torch.float64).flatten()
    if x.numel() != y.numel() or x.numel() < 2:
        raise ValueError(f"need at least two (x, y) pairs of equal length, got {x.numel()} x and {y.numel()} y")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("a power law is fitted on log axes: every x and y must be > 0")
    lx, ly = x.log(), y.log()
    lx_mean, ly_mean = lx.mean(), ly.mean()
    slope = ((lx - lx_mean) * (ly - ly_mean)).sum() / ((lx - lx_mean) ** 2).sum()
    return PowerLaw(scale=float((ly_mean - slope * lx_mean).exp()), exponent=float(-slope))


def compute_frontier(compute: Sequence[float], loss: Sequence[float]) -> tuple[list[float], list[float]]:
    """The points that no other point beats with less compute: sorted by compute, each with a
    lower loss than every point before it (the compute-efficient frontier of Kaplan et al.)."""
    if len(compute) != len(loss):
        raise ValueError(f"{len(compute)} compute values for {len(loss)} losses")
    frontier_c, frontier_l = [], []
    for c, l in sorted(zip(compute, loss)):
        if not frontier_l or l < frontier_l[-1]:
            frontier_c.append(c)
            frontier_l.append(l)
    return frontier_c, frontier_l


def text_windows(data: torch.Tensor, batch_size: int, T: int, step: int, seed: int = 0) -> torch.Tensor:
    """``batch_size`` random windows of ``T`` tokens of ``data`` (1-D ids), ``(B, T)``.

    The windows depend only on ``(seed, step)``, so every process of a data-parallel run draws
    the same batch at the same step (and keeps its own rows of it).
    """
    check_tensor("data", data, ndim=1, floating=False)
    check_positive_int("batch_size", batch_size)
    check_positive_int("T", T)
    if len(data) <= T:
        raise ValueError(f"data has {len(data)} tokens, too few for windows of T={T}")
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, len(data) - T, (batch_size,), generator=g)
    return torch.stack([data[s:s + T] for s in starts.tolist()])                 # (B, T)


@torch.no_grad()
def held_out_loss(model: nn.Module, data: torch.Tensor, T: int, batch_size: int = 64) -> float:
    """Mean causal-LM loss over the consecutive windows of ``T`` tokens of ``data``, in eval mode."""
    check_tensor("data", data, ndim=1, floating=False)
    windows = data[: (len(data) // T) * T].view(-1, T)                           # (n, T)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(windows), batch_size):
        ids = windows[i:i + batch_size].to(device)
        total += causal_lm_loss(model(ids), ids).item() * len(ids)
    model.train(was_training)
    return total / len(windows)


# ---- 4. mixed precision ----------------------------------------------------------------------

def autocast_dtype(device: torch.device | str) -> torch.dtype:
    """The 16-bit type of ``torch.autocast`` on ``device``: bfloat16 on a CPU, float16 on CUDA
    (which then needs a ``torch.amp.GradScaler``)."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def autocast_output_dtypes(model: nn.Module, ids: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> dict[str, str]:
    """``{module class: output dtype(s)}`` of one forward pass under ``torch.autocast``, and
    ``"loss"`` for the causal LM loss computed in the same context."""
    device = next(model.parameters()).device
    seen: dict[str, set[str]] = {}

    def hook(module, inputs, output):
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(out, torch.Tensor):
            seen.setdefault(type(module).__name__, set()).add(str(out.dtype).removeprefix("torch."))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not isinstance(m, nn.Dropout)]
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype):
            loss = causal_lm_loss(model(ids.to(device)), ids.to(device))
    finally:
        for h in handles:
            h.remove()
    table = {name: ", ".join(sorted(dtypes)) for name, dtypes in seen.items()}
    table["loss"] = str(loss.dtype).removeprefix("torch.")
    return table


def cpu_description() -> str:
    """The CPU's name and the 16-bit instructions PyTorch can use on it (machine-dependent)."""
    name = platform_name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        import platform
        platform_name = platform.processor() or platform.machine()
    features = []
    for label, probe in (("AVX512-BF16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported"),
                         ("AVX512-FP16", "_is_avx512_fp16_supported")):
        check = getattr(torch.cpu, probe, None)
        try:
            if check is not None and check():
                features.append(label)
        except Exception:  # noqa: BLE001 - a private probe that changed: just do not report it
            pass
    capability = torch.backends.cpu.get_cpu_capability()
    bf16 = ", ".join(features) if features else "no bfloat16 matrix instructions"
    return f"{name or platform_name or 'unknown CPU'} (PyTorch kernels: {capability}; {bf16})"


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    On Linux ``VmHWM`` of ``/proc/self/status`` (``getrusage`` would also count the memory of the
    parent that a spawned process was forked from before it started a fresh Python); elsewhere
    ``getrusage`` (bytes on macOS, KiB on other systems)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


# ---- 5. data parallelism: the all-reduce, the launcher, the worker ----------------------------

def average_gradients(model: nn.Module) -> None:
    """Replace every parameter's ``.grad`` by its mean over the processes of the default group:
    ``dist.all_reduce`` sums it in place on every process, then divide by the world size."""
    import torch.distributed as dist
    world_size = dist.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world_size


class WorkerError(RuntimeError):
    """A worker process failed; the message holds its traceback."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the operating system picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback_interface() -> str | None:
    try:
        names = [name for _, name in socket.if_nameindex()]
    except (AttributeError, OSError):
        return None
    return next((n for n in names if n in ("lo", "lo0")), None)


def _process_entry(worker: Callable, rank: int, world_size: int, port: int, out_dir: str, args: tuple,
                   timeout_s: float) -> None:
    """What each spawned process runs: join the gloo group, run ``worker``, save its result."""
    import torch.distributed as dist
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    loopback = _loopback_interface()
    if loopback and "GLOO_SOCKET_IFNAME" not in os.environ:
        os.environ["GLOO_SOCKET_IFNAME"] = loopback            # stay on this machine, whatever its hostname
    error = Path(out_dir) / f"rank{rank}.error"
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
        try:
            result = {"result": worker(rank, world_size, *args), "peak_memory_mb": peak_memory_mb()}
            torch.save(result, Path(out_dir) / f"rank{rank}.tmp")
            os.replace(Path(out_dir) / f"rank{rank}.tmp", Path(out_dir) / f"rank{rank}.pt")
        except BaseException:
            error.write_text(traceback.format_exc())           # before leaving the group: the others then
            raise                                              # lose contact and fail, after this one
        finally:
            dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 - report everything to the parent, then exit non-zero
        if not error.exists():
            error.write_text(traceback.format_exc())
        raise SystemExit(1)


def launch(worker: Callable, world_size: int, args: tuple = (), timeout: float = 120.0) -> list[Any]:
    """Run ``worker(rank, world_size, *args)`` in ``world_size`` new processes joined in a gloo
    process group, as ``torchrun`` would, and return their results in rank order.

    ``worker`` must be importable (a module's top-level function: a spawned process starts a
    fresh Python and imports it by name) and return something ``torch.save`` can store. Each
    process runs PyTorch on one thread, on a free port of 127.0.0.1. Whatever happens (an error
    in a worker, the timeout, an interrupt), every process is stopped before this returns.

    Returns:
        a list with one ``{"result": ..., "peak_memory_mb": ...}`` per rank.

    Raises:
        WorkerError: a worker failed (its traceback is in the message).
        TimeoutError: the workers did not finish within ``timeout`` seconds.
    """
    check_positive_int("world_size", world_size)
    if getattr(worker, "__module__", "__main__") == "__main__" or "<locals>" in getattr(worker, "__qualname__", "<locals>"):
        raise ValueError(f"worker must be a top-level function of an importable module (a spawned process imports "
                         f"it by name), got {getattr(worker, '__qualname__', worker)!r} from a notebook or a function")
    import torch.multiprocessing as mp
    context = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="transformer_course_") as out_dir:
        port = free_port()
        processes = [context.Process(target=_process_entry, daemon=True,
                                     args=(worker, rank, world_size, port, out_dir, tuple(args), timeout))
                     for rank in range(world_size)]
        try:
            for p in processes:
                p.start()
            deadline = time.monotonic() + timeout
            while any(p.is_alive() for p in processes):
                if any(p.exitcode not in (None, 0) for p in processes) or time.monotonic() > deadline:
                    break                                      # one failed (the others may wait for it) or too late
                wait_for_processes([p.sentinel for p in processes if p.is_alive()], timeout=0.1)
        finally:
            started = [p for p in processes if p.pid is not None]
            for p in started:                                  # stop whatever still runs, then reap every process
                if p.is_alive():
                    p.terminate()
            for p in started:
                p.join(5)
                if p.is_alive():
                    p.kill()
                    p.join()
        errors = sorted(Path(out_dir).glob("rank*.error"), key=lambda f: f.stat().st_mtime_ns)
        if errors:                                             # the first to fail; the others usually lost contact
            first, others = errors[0], len(errors) - 1
            then = f" ({others} other worker{'s' * (others > 1)} failed after it)" if others else ""
            raise WorkerError(f"worker {first.stem.removeprefix('rank')} of {world_size} failed{then}:\n"
                              f"{first.read_text()}")
        missing = [r for r in range(world_size) if not (Path(out_dir) / f"rank{r}.pt").exists()]
        if missing:
            raise TimeoutError(f"workers {missing} of {world_size} did not finish within {timeout:.0f} s "
                               f"(they were stopped)") if time.monotonic() > deadline else \
                WorkerError(f"workers {missing} of {world_size} ended without a result "
                            f"(exit codes {[p.exitcode for p in processes]})")
        return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


# -- sending a notebook's function to the workers --------------------------------------------
# A spawned process starts a fresh Python: it cannot import a function defined in a notebook.
# So we send the function's compiled code (marshal: same Python version on both sides) with
# the modules and values its global names refer to, and rebuild it there.

def _global_names(code: types.CodeType) -> set[str]:
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _importable(obj) -> bool:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return False
    try:
        target = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return False
    return target is obj


def _pack_value(name: str, value) -> tuple:
    if isinstance(value, types.ModuleType):
        return ("module", value.__name__)
    if isinstance(value, types.FunctionType) and not _importable(value):
        return ("function", pack_function(value))
    if callable(value) and _importable(value):
        return ("attribute", value.__module__, value.__qualname__)     # looked up again in the worker
    try:
        return ("pickle", pickle.dumps(value))
    except Exception as e:  # noqa: BLE001
        raise TypeError(f"the function uses `{name}` ({type(value).__name__}) from the notebook, which cannot be "
                        f"sent to another process ({e}): create it inside the function") from e


def pack_function(fn: Callable) -> dict:
    """Everything a spawned process needs to rebuild ``fn`` (see :func:`unpack_function`)."""
    if not isinstance(fn, types.FunctionType):
        raise TypeError(f"expected a Python function, got {type(fn).__name__}")
    if _importable(fn):
        return {"importable": (fn.__module__, fn.__qualname__)}
    code = fn.__code__
    values = {name: _pack_value(name, fn.__globals__[name]) for name in sorted(_global_names(code))
              if name in fn.__globals__}
    closure = [_pack_value(name, cell.cell_contents) for name, cell in zip(code.co_freevars, fn.__closure__ or ())]
    return {"code": marshal.dumps(code), "name": fn.__name__, "globals": values, "closure": closure,
            "defaults": pickle.dumps(fn.__defaults__), "kwdefaults": pickle.dumps(fn.__kwdefaults__)}


def _unpack_value(packed: tuple):
    kind = packed[0]
    if kind == "module":
        return importlib.import_module(packed[1])
    if kind == "function":
        return unpack_function(packed[1])
    if kind == "attribute":
        target = importlib.import_module(packed[1])
        for part in packed[2].split("."):
            target = getattr(target, part)
        return target
    return pickle.loads(packed[1])


def unpack_function(packed: dict) -> Callable:
    """Rebuild a function packed by :func:`pack_function` (in this process)."""
    if "importable" in packed:
        return _unpack_value(("attribute", *packed["importable"]))
    import builtins
    namespace = {"__builtins__": builtins, "__name__": "__notebook__"}
    namespace.update({name: _unpack_value(v) for name, v in packed["globals"].items()})
    closure = tuple(types.CellType(_unpack_value(v)) for v in packed["closure"]) or None
    fn = types.FunctionType(marshal.loads(packed["code"]), namespace, packed["name"],
                            pickle.loads(packed["defaults"]), closure)
    fn.__kwdefaults__ = pickle.loads(packed["kwdefaults"])
    return fn


# -- data-parallel training --------------------------------------------------------------------

@dataclass(frozen=True)
class DataParallelRun:
    """One training run: the model, the batch and the optimiser, the same in every process.

    Each step draws ``batch_size`` windows of ``T`` tokens (:func:`text_windows`, the same on
    every process); process ``rank`` of ``W`` trains on rows ``rank * B / W`` to
    ``(rank + 1) * B / W``. The optimiser, with a constant learning rate ``lr``: ``"sgd"``
    (with momentum 0.9: each step is linear in the gradient, so float rounding differences stay
    rounding differences) or ``"adamw"`` (it divides by the root of the squared gradients, which
    magnifies rounding differences in near-zero gradients over the steps).
    """

    config: GPTConfig
    steps: int
    batch_size: int = 32
    T: int = 64
    lr: float = 0.1
    seed: int = 0
    optimizer: str = "sgd"

    def __post_init__(self):
        _check_config(self.config)
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("T", self.T)
        if self.T > self.config.max_len:
            raise ValueError(f"T={self.T} is longer than the model's max_len={self.config.max_len}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")


def _train_shard(run: DataParallelRun, data: torch.Tensor, rank: int, world_size: int,
                 sync: str | Callable[[nn.Module], None], accumulate: int = 1) -> dict:
    """The training loop of one process. ``sync``: "ddp" (DistributedDataParallel), "none" (one
    process), or a function that averages the gradients after ``backward()``. With ``accumulate``
    = k, each of this process's rows is split into k parts whose gradients are added up, each
    part's loss divided by k (gradient accumulation: one process doing what k processes do)."""
    torch.manual_seed(run.seed)                                 # the same initial weights everywhere
    model = GPT(run.config)
    net = model
    if sync == "ddp":
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model)                   # averages the gradients during backward()
    if run.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=run.lr, momentum=0.9)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=run.lr)
    rows = run.batch_size // world_size
    losses, step_seconds, first_step = [], [], None
    model.train()
    with fused_attention(model):                                # as training.train: the fast attention kernel
        for step in range(run.steps):
            start = time.perf_counter()
            ids = text_windows(data, run.batch_size, run.T, step, run.seed)[rank * rows:(rank + 1) * rows]  # (B/W, T)
            optimizer.zero_grad(set_to_none=True)
            loss = 0.0
            for part in ids.chunk(accumulate):                  # (B/W/k, T) each
                part_loss = causal_lm_loss(net(part), part) / accumulate
                part_loss.backward()
                loss += part_loss.item()                        # the mean loss of this process's rows
            if callable(sync):
                sync(model)                                     # the hand-written all-reduce
            optimizer.step()
            step_seconds.append(time.perf_counter() - start)
            losses.append(loss)
            if step == 0:
                first_step = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()}, "first_step": first_step,
            "losses": losses, "step_seconds": step_seconds}


def data_parallel_worker(rank: int, world_size: int, run: DataParallelRun, data: torch.Tensor, sync) -> dict:
    """Entry point of each worker process of :func:`train_data_parallel`."""
    if isinstance(sync, dict):
        sync = unpack_function(sync)
    return _train_shard(run, data, rank, world_size, sync)


def train_data_parallel(run: DataParallelRun, data: torch.Tensor, world_size: int,
                        gradient_sync: str | Callable[[nn.Module], None] = "ddp", accumulate: int = 1,
                        timeout: float = 300.0) -> dict:
    """Train ``GPT(run.config)`` on ``data`` with ``world_size`` processes and return rank 0's result.

    Args:
        run: the model, batch and optimiser (:class:`DataParallelRun`); in smoke-test mode
            (``runtime.smoke_test_mode``) only 3 steps run.
        data: 1-D token ids to draw the windows from.
        world_size: 1 trains in this process, on one thread, on the whole batch, without any
            process group. More starts that many worker processes (:func:`launch`), each on its
            share of the batch.
        gradient_sync: ``"ddp"`` wraps the model in ``DistributedDataParallel``; a function
            ``fn(model)`` is called after ``backward()`` to average the gradients by hand (it may be
            defined in a notebook: its code is sent to the workers).
        accumulate: with ``world_size=1``, split the batch into this many parts and add up their
            gradients (what that many workers compute, in one process).

    Returns:
        ``{"state": final state_dict, "first_step": state_dict after the first step, "losses": [...],
        "step_seconds": [...], "ranks_equal": bool, "seconds": wall time including start-up,
        "peak_memory_mb": [per process]}``; ``ranks_equal`` says whether every worker ended with
        exactly the same parameters.
    """
    check_positive_int("world_size", world_size)
    check_positive_int("accumulate", accumulate)
    check_tensor("data", data, ndim=1, floating=False)
    if run.batch_size % (world_size * accumulate):
        raise ValueError(f"batch_size={run.batch_size} does not split evenly over world_size={world_size} "
                         f"x accumulate={accumulate}")
    if accumulate > 1 and world_size > 1:
        raise ValueError("accumulate is for one process (world_size=1): it imitates several workers")
    if not (gradient_sync == "ddp" or callable(gradient_sync)):
        raise ValueError(f"gradient_sync must be 'ddp' or a function fn(model), got {gradient_sync!r}")
    if smoke_test_mode():
        run = dataclasses.replace(run, steps=min(run.steps, SMOKE_STEPS))
    start = time.perf_counter()
    if world_size == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)                               # like each worker: the same arithmetic
        try:
            result = _train_shard(run, data, 0, 1, "none", accumulate)
        finally:
            torch.set_num_threads(threads)
        result.update(ranks_equal=True, peak_memory_mb=[peak_memory_mb()])
    else:
        sync = gradient_sync if gradient_sync == "ddp" else pack_function(gradient_sync)
        outputs = launch(data_parallel_worker, world_size, (run, data, sync), timeout=timeout)
        result = outputs[0]["result"]
        result["ranks_equal"] = all(torch.equal(result["state"][k], o["result"]["state"][k])
                                    for o in outputs[1:] for k in result["state"])
        result["peak_memory_mb"] = [o["peak_memory_mb"] for o in outputs]
    result["seconds"] = time.perf_counter() - start
    return result


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state dicts with the same keys and shapes."""
    if a.keys() != b.keys():
        raise ValueError(f"the state dicts have different keys: {sorted(a.keys() ^ b.keys())[:4]}")
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


# ---- 6. the GPU path -----------------------------------------------------------------------

def time_attention(device: torch.device | str, B: int = 4, H: int = 8, T: int = 512, d_k: int = 64,
                   repeats: int = 5) -> dict[str, float]:
    """Best-of-``repeats`` seconds of causal attention forward and backward, explicit (our
    ``scaled_dot_product_attention``: the T x T weights in memory) against PyTorch's fused
    ``F.scaled_dot_product_attention``, on ``device``; on CUDA also the peak memory of each, and
    the largest difference between their outputs (``"max_difference"``)."""
    import torch.nn.functional as F
    from .attention import scaled_dot_product_attention
    from .masks import causal_mask
    device = torch.device(device)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, T, d_k, generator=g).to(device).requires_grad_() for _ in range(3))
    mask = causal_mask(T).to(device)
    ways = {"explicit": lambda: scaled_dot_product_attention(q, k, v, mask)[0],
            "fused": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)}
    result: dict[str, float] = {}
    with torch.no_grad():
        result["max_difference"] = (ways["explicit"]() - ways["fused"]()).abs().max().item()
    for name, attend in ways.items():
        best = math.inf
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            attend().sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        result[f"{name}_seconds"] = best
        if device.type == "cuda":
            result[f"{name}_peak_bytes"] = float(torch.cuda.max_memory_allocated())
    return result



# ---- torchrun: the same training as a script -------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Data-parallel training of lesson 11's GPT on Python's source, as a script for ``torchrun``::

        torchrun --nproc_per_node=2 -m transformer_lib.scaling --steps 30

    ``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
    ``MASTER_PORT``; ``init_process_group`` reads them. Rank 0 prints its loss and the sum of all parameters (a checksum).
    """
    import argparse

    import torch.distributed as dist

    from .tokenizer import Tokenizer
    from .toy_text import python_source_corpus
    parser = argparse.ArgumentParser(description="DDP training of a character-level GPT (run it with torchrun)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if "RANK" not in os.environ:
        parser.error("start it with torchrun, e.g. torchrun --nproc_per_node=2 -m transformer_lib.scaling")
    torch.set_num_threads(1)
    dist.init_process_group("gloo")                           # env://: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    try:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        text = python_source_corpus(("difflib", "optparse"))
        tokenizer = Tokenizer.from_corpus([text], level="char")
        data = torch.tensor(tokenizer.encode(text))
        config = GPTConfig.tiny(len(tokenizer), d_model=64, num_heads=4, num_layers=2, d_ff=256, max_len=64)
        run = DataParallelRun(config, steps=args.steps, batch_size=args.batch_size)
        result = _train_shard(run, data[: int(0.9 * len(data))], rank, world_size, "ddp")
        if rank == 0:
            checksum = sum(v.double().sum().item() for v in result["state"].values())
            print(f"{world_size} processes, {args.steps} steps: rank 0's last loss {result['losses'][-1]:.4f}, "
                  f"parameter checksum {checksum:.6f}")
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
