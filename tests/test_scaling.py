"""Lesson 14: FLOPs, memory, the power-law fit, mixed precision, and data-parallel training in
real worker processes (started, checked and cleaned up)."""
from __future__ import annotations

import math
import multiprocessing
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from conftest import B, D, H, ROOT, T
from transformer_lib.gpt import GPT, GPTConfig, causal_lm_loss
from transformer_lib.scaling import (
    DataParallelRun, PowerLaw, WorkerError, activation_numbers, autocast_output_dtypes, average_gradients,
    compute_frontier, count_training_flops, cpu_description, fit_power_law, format_bytes, free_port, gpt3_config,
    held_out_loss, largest_difference, launch, matmul_parameters, pack_function, parameter_counts,
    saved_activation_bytes, text_windows, time_attention, train_data_parallel, training_flops_per_token,
    training_memory, unpack_function, zero_memory_per_device,
)

V = 11


def tiny_config(**changes):
    fields = dict(d_model=D, num_heads=H, num_layers=2, d_ff=20, max_len=16)
    fields.update(changes)
    return GPTConfig.tiny(V, **fields)


# ---- FLOPs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [{}, {"tie_weights": False}, {"num_layers": 3, "d_ff": 7}])
def test_flop_formula_equals_flop_counter_mode(changes):
    config = tiny_config(**changes)
    torch.manual_seed(0)
    model = GPT(config)
    ids = torch.randint(0, V, (B, T))
    counted, by_op = count_training_flops(model, ids)
    assert counted == training_flops_per_token(config, T) * B * T
    assert set(by_op) == {"addmm", "mm", "bmm"}
    assert all(p.grad is None for p in model.parameters())


def test_flop_formula_parts():
    config = tiny_config()
    assert matmul_parameters(config) == 2 * (4 * D * D + 2 * D * 20) + V * D
    assert training_flops_per_token(config, T) == 6 * matmul_parameters(config) + 12 * 2 * T * D
    with pytest.raises(TypeError, match="GPTConfig"):
        training_flops_per_token({"d_model": 4}, T)
    with pytest.raises(ValueError, match="T must be a positive int"):
        training_flops_per_token(config, 0)


def test_parameter_counts_match_the_model_and_gpt3():
    config = tiny_config(tie_weights=False)
    counts = parameter_counts(config)
    model = GPT(config)
    assert counts["total"] == model.num_parameters()
    assert counts["embedding"] == model.embed.weight.numel() + model.pos.weight.numel()
    assert counts["non_embedding"] == counts["total"] - counts["embedding"]
    gpt3 = parameter_counts(gpt3_config())
    assert 174e9 < gpt3["total"] < 176e9                        # "175 B"
    assert 173e9 < gpt3["non_embedding"] < gpt3["total"]
    assert 12 * 96 * 12288 ** 2 < gpt3["non_embedding"] < 1.01 * 12 * 96 * 12288 ** 2   # N ~ 12 L D^2


# ---- memory -------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, batch, length", [({}, B, T), ({"num_heads": 2, "d_ff": 30}, 3, 9),
                                                     ({"num_layers": 1, "d_model": 20, "num_heads": 4}, 1, 16)])
def test_activation_formula_is_close_to_what_autograd_saves(changes, batch, length):
    config = tiny_config(**changes)
    model = GPT(config)
    ids = torch.randint(0, V, (batch, length))
    measured = saved_activation_bytes(model, ids) / 4
    estimated = activation_numbers(config, batch, length)
    assert 0.8 < estimated / measured < 1.2
    assert all(p.grad is None for p in model.parameters())


def test_saved_activations_grow_with_the_batch_and_restore_the_mode():
    model = GPT(tiny_config()).eval()
    small = saved_activation_bytes(model, torch.randint(0, V, (2, T)))
    large = saved_activation_bytes(model, torch.randint(0, V, (4, T)))
    assert 1.8 < large / small < 2.2
    assert not model.training


def test_training_memory_table():
    config = tiny_config()
    n = parameter_counts(config)["total"]
    fp32 = training_memory(config, B, T)
    assert fp32["parameters"] == fp32["gradients"] == 4 * n
    assert fp32["Adam moments (m, v)"] == 8 * n and fp32["float32 master weights"] == 0
    assert fp32["activations"] == 4 * activation_numbers(config, B, T)
    mixed = training_memory(config, B, T, mixed_precision=True)
    per_param = sum(mixed[k] for k in ("parameters", "gradients", "Adam moments (m, v)", "float32 master weights"))
    assert per_param == 16 * n and mixed["activations"] * 2 == fp32["activations"]
    # the KV cache row is what lesson 11's cache really holds
    model = GPT(config).eval()
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(0, V, (B, T)), cache=cache)
    assert fp32["KV cache (generation)"] == cache.nbytes


def test_zero_memory_per_device():
    n = 1000
    assert zero_memory_per_device(n, 1, 0) == zero_memory_per_device(n, 1, 3) == 16 * n
    assert zero_memory_per_device(n, 8, 0) == 16 * n
    assert zero_memory_per_device(n, 8, 1) == 4 * n + 12 * n / 8
    assert zero_memory_per_device(n, 8, 2) == 2 * n + 14 * n / 8
    assert zero_memory_per_device(n, 8, 3) == 2 * n
    with pytest.raises(ValueError, match="stage"):
        zero_memory_per_device(n, 8, 4)


def test_format_bytes():
    assert format_bytes(0) == "0 B" and format_bytes(1023) == "1023 B"
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(3 * 2**30) == "3 GiB"
    assert format_bytes(2.55 * 2**40) == "2.55 TiB"
    with pytest.raises(ValueError):
        format_bytes(-1)


# ---- the scaling law ----------------------------------------------------------------------------

def test_power_law_fit_recovers_a_known_law():
    x = [1e3, 1e4, 3e4, 1e5, 1e6]
    law = PowerLaw(scale=7.0, exponent=0.076)
    fit = fit_power_law(x, law(x).tolist())
    assert math.isclose(fit.exponent, 0.076, rel_tol=1e-9) and math.isclose(fit.scale, 7.0, rel_tol=1e-9)
    assert math.isclose(PowerLaw(2.0, 0.5).critical(), 4.0)
    with pytest.raises(ValueError, match="at least two"):
        fit_power_law([1.0], [2.0])
    with pytest.raises(ValueError, match="> 0"):
        fit_power_law([1.0, 0.0], [2.0, 1.0])


def test_compute_frontier_keeps_the_best_loss_for_its_compute():
    compute = [4, 1, 2, 3, 5]
    loss = [1.0, 3.0, 2.5, 2.7, 1.2]
    assert compute_frontier(compute, loss) == ([1, 2, 4], [3.0, 2.5, 1.0])
    with pytest.raises(ValueError):
        compute_frontier([1, 2], [1.0])


def test_text_windows_depend_only_on_seed_and_step():
    data = torch.arange(100)
    a = text_windows(data, 3, 7, step=5)
    assert a.shape == (3, 7) and torch.equal(a, text_windows(data, 3, 7, step=5))
    assert not torch.equal(a, text_windows(data, 3, 7, step=6))
    assert torch.equal(a[:, 1:] - a[:, :-1], torch.ones(3, 6, dtype=torch.long))   # consecutive tokens
    with pytest.raises(ValueError, match="too few"):
        text_windows(torch.arange(5), 2, 7, 0)


def test_held_out_loss_is_the_mean_over_windows():
    torch.manual_seed(0)
    model = GPT(tiny_config()).train()
    data = torch.randint(0, V, (3 * T + 2,))
    windows = data[:3 * T].view(3, T)
    with torch.no_grad():
        want = causal_lm_loss(model.eval()(windows), windows).item()
    model.train()
    assert math.isclose(held_out_loss(model, data, T, batch_size=2), want, rel_tol=1e-5)
    assert model.training


# ---- mixed precision ------------------------------------------------------------------------------

def test_autocast_runs_matrix_products_in_bfloat16_and_the_loss_in_float32():
    model = GPT(tiny_config())
    table = autocast_output_dtypes(model, torch.randint(0, V, (B, T)))
    assert table["Linear"] == "bfloat16" and table["loss"] == "float32"
    assert table["LayerNorm"] == "float32" and table["Embedding"] == "float32"
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_cpu_description_names_the_kernels():
    assert torch.backends.cpu.get_cpu_capability() in cpu_description()


def test_fused_and_explicit_attention_agree():
    times = time_attention("cpu", B=1, H=3, T=7, d_k=4, repeats=1)
    assert times["max_difference"] < 1e-5
    assert times["explicit_seconds"] > 0 and times["fused_seconds"] > 0


# ---- sending a function to another process --------------------------------------------------------

def test_pack_function_round_trip():
    offset = 3

    def add(x, scale=2):
        return math.floor(x * scale) + offset               # a module global, a closure, a default
    again = unpack_function(pack_function(add))
    assert again(2.6) == add(2.6) == 8 and again is not add
    assert unpack_function(pack_function(average_gradients)) is average_gradients   # importable: by name


def test_pack_function_of_a_notebook_function():
    namespace = {"__name__": "__main__"}
    exec("import torch\nhelper = lambda t: t * 2\ndef f(t):\n    return helper(torch.as_tensor(t)) + 1\n",
         namespace)
    again = unpack_function(pack_function(namespace["f"]))
    assert again(3).item() == 7


def test_pack_function_explains_what_cannot_be_sent():
    lock = multiprocessing.Lock()

    def uses_lock():
        return lock
    with pytest.raises(TypeError, match="cannot be sent"):
        pack_function(uses_lock)


# ---- the launcher: results, errors, timeouts, clean-up ---------------------------------------------

def rank_and_sum(rank, world_size, value):
    import torch.distributed as dist
    t = torch.tensor([float(rank + value)])
    dist.all_reduce(t)
    return {"rank": rank, "world_size": world_size, "sum": t.item()}


def fails_on_rank_one(rank, world_size):
    if rank == 1:
        raise ValueError("rank one says no")
    import torch.distributed as dist
    dist.barrier()                                           # rank 0 would wait for ever
    return rank


def sleeps(rank, world_size):
    time.sleep(600)


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


def test_launch_returns_results_in_rank_order(monkeypatch):
    ports = []
    real_free_port = free_port
    monkeypatch.setattr("transformer_lib.scaling.free_port", lambda: ports.append(real_free_port()) or ports[-1])
    out = launch(rank_and_sum, 3, (10,))
    assert [o["result"]["rank"] for o in out] == [0, 1, 2]
    assert all(o["result"]["sum"] == 33.0 and o["result"]["world_size"] == 3 for o in out)
    assert all(0 < o["peak_memory_mb"] < 1000 for o in out)      # the worker's own memory, not its parent's
    assert not multiprocessing.active_children() and port_is_free(ports[0])


def test_launch_reports_a_worker_error_and_stops_the_others():
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"worker 1 of 2 failed( \(1 other worker failed after it\))?:(.|\n)*ValueError: rank one says no"):
        launch(fails_on_rank_one, 2, timeout=120)
    assert time.monotonic() - start < 100                    # not the collective timeout
    assert not multiprocessing.active_children()


def test_launch_stops_workers_at_the_timeout():
    with pytest.raises(TimeoutError, match="did not finish within 5 s"):
        launch(sleeps, 2, timeout=5)
    assert not multiprocessing.active_children()


def test_launch_needs_an_importable_worker():
    with pytest.raises(ValueError, match="importable"):
        launch(lambda rank, world_size: rank, 2)


# ---- data-parallel training ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def parallel_runs():
    data = torch.randint(0, V, (500,), generator=torch.Generator().manual_seed(0))
    run = DataParallelRun(tiny_config(), steps=4, batch_size=6, T=T)
    adam = DataParallelRun(tiny_config(), steps=4, batch_size=6, T=T, lr=1e-2, optimizer="adamw")
    return {"data": data, "run": run,
            "one": train_data_parallel(run, data, 1),
            "accumulated": train_data_parallel(run, data, 1, accumulate=2),
            "ddp": train_data_parallel(run, data, 2),
            "hand": train_data_parallel(run, data, 2, gradient_sync=average_gradients),
            "adam_accumulated": train_data_parallel(adam, data, 1, accumulate=2),
            "adam_ddp": train_data_parallel(adam, data, 2)}


def test_ddp_equals_gradient_accumulation_bit_for_bit(parallel_runs):
    ddp, accumulated = parallel_runs["ddp"], parallel_runs["accumulated"]
    assert ddp["ranks_equal"]
    assert largest_difference(ddp["state"], accumulated["state"]) == 0
    assert parallel_runs["adam_ddp"]["ranks_equal"]
    assert largest_difference(parallel_runs["adam_ddp"]["state"], parallel_runs["adam_accumulated"]["state"]) == 0
    assert largest_difference(parallel_runs["adam_ddp"]["state"], ddp["state"]) > 1e-3     # another optimiser
    assert len(ddp["losses"]) == 4 and len(ddp["peak_memory_mb"]) == 2
    assert not multiprocessing.active_children()


def test_ddp_equals_one_process_with_the_whole_batch_up_to_rounding(parallel_runs):
    ddp, one = parallel_runs["ddp"], parallel_runs["one"]
    assert largest_difference(ddp["first_step"], one["first_step"]) < 1e-6
    assert largest_difference(ddp["state"], one["state"]) < 1e-5
    start = GPT(tiny_config()).state_dict()          # and the runs really trained
    assert largest_difference(one["state"], start) > 1e-3


def test_hand_written_all_reduce_equals_ddp(parallel_runs):
    hand, ddp = parallel_runs["hand"], parallel_runs["ddp"]
    assert hand["ranks_equal"] and largest_difference(hand["state"], ddp["state"]) < 1e-6


def test_train_data_parallel_rejects_bad_arguments(parallel_runs):
    data, run = parallel_runs["data"], parallel_runs["run"]
    with pytest.raises(ValueError, match="does not split evenly"):
        train_data_parallel(run, data, 4)
    with pytest.raises(ValueError, match="gradient_sync"):
        train_data_parallel(run, data, 2, gradient_sync="allreduce")
    with pytest.raises(ValueError, match="accumulate is for one process"):
        train_data_parallel(run, data, 2, accumulate=3)
    with pytest.raises(ValueError, match="longer than the model's max_len"):
        DataParallelRun(tiny_config(), steps=2, T=17)
    with pytest.raises(ValueError, match="optimizer must be"):
        DataParallelRun(tiny_config(), steps=2, T=T, optimizer="adam")


def test_train_data_parallel_runs_three_steps_in_smoke_mode(parallel_runs, monkeypatch):
    monkeypatch.setenv("TRANSFORMER_COURSE_SMOKE", "1")
    result = train_data_parallel(parallel_runs["run"].__class__(tiny_config(), steps=50, batch_size=4, T=T),
                                 parallel_runs["data"], 1)
    assert len(result["losses"]) == 3


def test_torchrun_runs_the_same_training():
    """`torchrun --nproc_per_node=2 -m transformer_lib.scaling` gives exactly what one process
    accumulating two halves gives."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "-m", "transformer_lib.scaling", "--steps", "2", "--batch-size", "4"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [l for l in out.stdout.splitlines() if "processes" in l][0]

    from transformer_lib import Tokenizer
    from transformer_lib.toy_text import python_source_corpus
    text = python_source_corpus(("difflib", "optparse"))
    tokenizer = Tokenizer.from_corpus([text], level="char")
    data = torch.tensor(tokenizer.encode(text))
    config = GPTConfig.tiny(len(tokenizer), d_model=64, num_heads=4, num_layers=2, d_ff=256, max_len=64)
    one = train_data_parallel(DataParallelRun(config, steps=2, batch_size=4), data[: int(0.9 * len(data))], 1,
                              accumulate=2)
    checksum = sum(v.double().sum().item() for v in one["state"].values())
    assert line.startswith("2 processes, 2 steps: rank 0's last loss ")
    assert line.endswith(f"parameter checksum {checksum:.6f}")


def test_script_without_torchrun_says_how_to_start_it(capsys):
    from transformer_lib.scaling import main
    with pytest.raises(SystemExit):
        main(["--steps", "1"])
    assert "torchrun" in capsys.readouterr().err
