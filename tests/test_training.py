"""Training helpers: the label-smoothed loss, the schedule, teacher forcing, a short training run,
save/load, and the generic loop."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import B, T
from transformer_lib.checkpoint import load_model, save_model
from transformer_lib.data import DateTask
from transformer_lib.decoding import greedy_decode
from transformer_lib.multi_head_attention import fused_attention
from transformer_lib.training import (SMOKE_STEPS, History, exact_match, label_smoothed_cross_entropy, lr_scheduler,
                                      noam_lr, noam_scheduler, seq2seq_loss, shift_right, to_device, token_accuracy,
                                      train, train_step, warmup_linear_decay_lr)
from transformer_lib.transformer import Transformer, TransformerConfig

V = 11


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("pad_id", [0, 4])
def test_loss_equals_pytorch_cross_entropy(smoothing, pad_id):
    logits = torch.randn(B, T, V) * 3
    target = torch.randint(0, V, (B, T))
    target[0, -2:] = pad_id
    ours = label_smoothed_cross_entropy(logits, target, smoothing=smoothing, pad_id=pad_id)
    theirs = F.cross_entropy(logits.reshape(-1, V), target.reshape(-1), label_smoothing=smoothing, ignore_index=pad_id)
    torch.testing.assert_close(ours, theirs)


def test_loss_gradient_equals_pytorch():
    logits = torch.randn(B, T, V, requires_grad=True)
    target = torch.randint(1, V, (B, T))
    target[1, 3:] = 0
    label_smoothed_cross_entropy(logits, target, 0.1).backward()
    ours = logits.grad.clone()
    logits.grad = None
    F.cross_entropy(logits.reshape(-1, V), target.reshape(-1), label_smoothing=0.1, ignore_index=0).backward()
    torch.testing.assert_close(ours, logits.grad)
    assert (ours[1, 3:] == 0).all()                           # padding positions get no gradient


def test_loss_is_never_inf_or_nan():
    huge = torch.tensor([[[1e4, -1e4, 0.0, 3e3], [-5e3, 2e4, 1.0, 0.0]]])
    target = torch.tensor([[1, 2]])
    loss = label_smoothed_cross_entropy(huge, target, 0.1)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, F.cross_entropy(huge.view(-1, 4), target.view(-1), label_smoothing=0.1))
    only_padding = label_smoothed_cross_entropy(torch.randn(2, 3, 5, requires_grad=True), torch.zeros(2, 3, dtype=torch.long))
    assert only_padding.item() == 0.0
    only_padding.backward()                                   # still differentiable
    half = label_smoothed_cross_entropy(torch.randn(4, 5).half(), torch.tensor([1, 2, 3, 0]))
    assert torch.isfinite(half)
    assert label_smoothed_cross_entropy(torch.randn(3, 5), torch.tensor([0, 1, 2]), pad_id=None) > 0


def test_loss_floor_is_the_entropy_of_the_smoothed_target():
    """The best possible loss puts exactly q on every class: the loss is then H(q), not 0."""
    eps, V_ = 0.1, 15
    q = torch.full((V_,), eps / V_)
    q[3] += 1 - eps
    best = label_smoothed_cross_entropy(q.log()[None], torch.tensor([3]), eps)
    entropy = -(q * q.log()).sum()
    torch.testing.assert_close(best, entropy)
    assert best < label_smoothed_cross_entropy((q.log() * 2)[None], torch.tensor([3]), eps)


def test_loss_bad_input():
    with pytest.raises(ValueError, match="must agree"):
        label_smoothed_cross_entropy(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="smoothing"):
        label_smoothed_cross_entropy(torch.randn(2, 5), torch.zeros(2, dtype=torch.long), smoothing=1.0)
    with pytest.raises(TypeError, match="integer"):
        label_smoothed_cross_entropy(torch.randn(2, 5), torch.zeros(2))


def test_noam_lr_at_known_steps():
    d, w = 512, 4000
    assert noam_lr(1, d, w) == pytest.approx(512 ** -0.5 * 4000 ** -1.5)
    assert noam_lr(w, d, w) == pytest.approx(1 / math.sqrt(512 * 4000))          # the peak, ~7.0e-4
    assert noam_lr(w, d, w) == pytest.approx(6.9877e-4, rel=1e-4)
    assert noam_lr(4 * w, d, w) == pytest.approx(noam_lr(w, d, w) / 2)           # 1/sqrt(step) decay
    assert noam_lr(w // 2, d, w) == pytest.approx(noam_lr(w, d, w) / 2)          # linear warm-up
    assert noam_lr(100, 64, 200, factor=2.0) == pytest.approx(2 * 64 ** -0.5 * 100 * 200 ** -1.5)
    steps = range(1, 20_000, 97)
    values = [noam_lr(s, d, w) for s in steps]
    peak = max(range(len(values)), key=values.__getitem__)
    assert abs(list(steps)[peak] - w) < 100
    with pytest.raises(ValueError):
        noam_lr(0, d, w)


def test_noam_scheduler_sets_the_optimizers_learning_rate():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=0.5)
    sched = noam_scheduler(opt, d_model=64, warmup_steps=10, factor=2.0)
    seen = []
    for _ in range(30):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([noam_lr(s, 64, 10, 2.0) for s in range(1, 31)])


def test_warmup_linear_decay_lr():
    peak, warm, total = 3e-3, 10, 100
    values = [warmup_linear_decay_lr(s, total, warm, peak) for s in range(1, total + 1)]
    assert values[0] == pytest.approx(peak / warm)
    assert values[warm - 1] == pytest.approx(peak) and max(values) == pytest.approx(peak)
    assert values[-1] == pytest.approx(peak / (total - warm + 1))                  # last step: almost zero
    assert all(a >= b for a, b in zip(values[warm - 1:], values[warm:]))
    with pytest.raises(ValueError):
        warmup_linear_decay_lr(1, 10, 10, peak)
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([p], lr=0.5)
    sched = lr_scheduler(opt, lambda s: warmup_linear_decay_lr(s, total, warm, peak))
    seen = []
    for _ in range(total):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(values)


def test_shift_right():
    target = torch.tensor([[5, 6, 7, 3], [8, 3, 0, 0]])
    assert shift_right(target, bos_id=2).tolist() == [[2, 5, 6, 7], [2, 8, 0, 0]]


@pytest.fixture(scope="module")
def task():
    return DateTask(n_train=2_000, n_val=64, n_test=64, seed=1)


def small_model(task, seed=0, **changes):
    torch.manual_seed(seed)
    config = TransformerConfig.tiny(len(task.src_tokenizer), len(task.tgt_tokenizer), d_model=32, num_heads=2,
                                    num_layers=1, d_ff=64, max_len=32, **{"dropout": 0.0, **changes})
    return Transformer(config)


def test_a_short_training_run_lowers_the_loss(task, monkeypatch):
    monkeypatch.delenv("TRANSFORMER_COURSE_SMOKE", raising=False)
    model = small_model(task)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    val = task.batches("val", 64)
    before = token_accuracy(model, val)
    history = train(model, task.batch_stream(64, seed=0), seq2seq_loss(0.1), steps=120, optimizer=opt,
                    evaluate=lambda m: {"val_token_accuracy": token_accuracy(m, val)}, eval_every=60,
                    progress=False)
    first, last = sum(history.loss[:10]) / 10, sum(history.loss[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    assert history.metric("val_token_accuracy")[0] == [60, 120]
    assert history.metric("val_token_accuracy")[1][-1] > before + 0.2
    assert not model.training and history.seconds > 0


def test_training_is_deterministic(task, monkeypatch):
    monkeypatch.delenv("TRANSFORMER_COURSE_SMOKE", raising=False)
    losses = []
    for _ in range(2):
        model = small_model(task, seed=3)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        losses.append(train(model, task.batch_stream(32, seed=2), seq2seq_loss(0.1), steps=8, optimizer=opt,
                            progress=False).loss)
    assert losses[0] == losses[1]


def test_train_keeps_its_generic_signature(monkeypatch):
    """Lessons 10-12 call train with a plain loss function and batches of any kind."""
    monkeypatch.delenv("TRANSFORMER_COURSE_SMOKE", raising=False)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 5, gamma=0.5)
    history = train(model, [(x, y)], lambda m, b: F.mse_loss(m(b[0]), b[1]), steps=10, optimizer=opt,
                    scheduler=sched, clip_norm=None, progress=True, desc="linear")
    assert isinstance(history, History) and len(history.loss) == 10 and history.loss[-1] < history.loss[0]
    assert history.lr[:6] == [0.1] * 5 + [0.05]
    monkeypatch.setenv("TRANSFORMER_COURSE_SMOKE", "1")
    assert len(train(model, lambda step: (x, y), lambda m, b: F.mse_loss(m(b[0]), b[1]), steps=50,
                     optimizer=opt, progress=False).loss) == SMOKE_STEPS


def test_train_is_a_loop_over_train_step(task, monkeypatch):
    """Lesson 08 says so: the same steps by hand give the same losses, rates and weights."""
    monkeypatch.delenv("TRANSFORMER_COURSE_SMOKE", raising=False)
    runs = []
    for by_hand in (False, True):
        model = small_model(task, seed=5, dropout=0.1)
        opt = torch.optim.AdamW(model.parameters(), lr=1.0)
        sched = lr_scheduler(opt, lambda step: 1e-3 * step)
        batches = task.batch_stream(16, seed=1)
        torch.manual_seed(7)
        if by_hand:
            losses, lrs = [], []
            with fused_attention(model):                 # as train() runs its steps
                for _ in range(5):
                    lrs.append(opt.param_groups[0]["lr"])
                    losses.append(train_step(model, to_device(batches(), "cpu"), seq2seq_loss(0.1), opt, sched,
                                             clip_norm=0.5))
        else:
            history = train(model, batches, seq2seq_loss(0.1), steps=5, optimizer=opt, scheduler=sched,
                            clip_norm=0.5, progress=False)
            losses, lrs = history.loss, history.lr
        assert all(isinstance(loss, float) for loss in losses)
        runs.append((losses, lrs, torch.cat([p.detach().flatten() for p in model.parameters()])))
    assert runs[0][1] == runs[1][1] == pytest.approx([1e-3 * s for s in range(1, 6)])
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-5)
    assert torch.allclose(runs[0][2], runs[1][2], atol=1e-6)


def test_train_raises_on_a_non_finite_loss(monkeypatch):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train(model, [torch.ones(1, 2)], lambda m, b: m(b).sum() * float("nan"), steps=2, optimizer=opt,
              progress=False)


def test_save_then_load_gives_identical_outputs(task, tmp_path):
    model = small_model(task, seed=4, positional="learned").eval()
    path = tmp_path / "dates.pt"
    save_model(model, path, src_vocab=task.src_tokenizer.itos, tgt_vocab=task.tgt_tokenizer.itos)
    loaded, extra = load_model(path, return_extra=True)
    assert loaded.config == model.config and not loaded.training
    assert extra["src_vocab"] == task.src_tokenizer.itos
    batch = task.make_batch(task.test[:9])
    torch.testing.assert_close(loaded(batch.src, batch.tgt_in), model(batch.src, batch.tgt_in), rtol=0, atol=0)
    assert torch.equal(greedy_decode(loaded, batch.src, 12), greedy_decode(model, batch.src, 12))
    assert load_model(path).config == model.config
    with pytest.raises(TypeError, match="config"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "x.pt")
    import transformer_lib.training as training
    with pytest.warns(DeprecationWarning, match="transformer_lib.training.load_model is deprecated: use "
                                                "transformer_lib.checkpoint.load_model"):
        assert training.load_model is load_model


def test_exact_match_and_token_accuracy(task):
    assert exact_match(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        exact_match(["a"], ["a", "b"])
    model = small_model(task)
    acc = token_accuracy(model, task.batches("val", 32))
    assert 0.0 <= acc <= 1.0
    assert model.training                                     # left as it was


def test_loss_takes_int32_targets_and_names_small_integer_dtypes():
    logits, target = torch.randn(2, 5, V), torch.randint(0, V, (2, 5))
    torch.testing.assert_close(label_smoothed_cross_entropy(logits, target.int()), label_smoothed_cross_entropy(logits, target))
    with pytest.raises(TypeError, match=r"target must be an integer tensor .*got dtype torch.uint8: convert it with target.long\(\)"):
        label_smoothed_cross_entropy(logits, target.to(torch.uint8))


def test_train_checks_its_arguments_before_the_first_step(task):
    model = small_model(task)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = task.batches("val", 4)
    with pytest.raises(TypeError, match=r"optimizer must be a torch.optim.Optimizer, e.g. torch.optim.AdamW"):
        train(model, batches, seq2seq_loss(), steps=1, optimizer=model.parameters(), progress=False)
    with pytest.raises(TypeError, match="loss_fn must be a function loss_fn\\(model, batch\\) -> loss"):
        train(model, batches, None, steps=1, optimizer=opt, progress=False)
    with pytest.raises(ValueError, match="batches ran out before step 1: pass a non-empty list"):
        train(model, [], seq2seq_loss(), steps=1, optimizer=opt, progress=False)
    with pytest.raises(TypeError, match=r"loss_fn must return a scalar loss tensor, got a tensor of shape \(2,\) at step 1"):
        train(model, batches, lambda m, b: torch.ones(2), steps=1, optimizer=opt, progress=False)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        token_accuracy(None, batches)
