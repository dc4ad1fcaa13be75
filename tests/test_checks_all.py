"""Rules that hold for every exercise check exported by ``transformer_lib.checks``.

* the reference passes and is returned;
* the untouched stub (``raise NotImplementedError()``, as the exercise notebooks are generated) is
  "not implemented yet" and returns the reference, marked as such for :func:`yours`;
* a learner's own ``NotImplementedError`` (with a message, or raised for some inputs only) is
  judged: the check fails and shows it;
* changing an argument in place fails, and the message names the argument;
* the failure's traceback holds no frame of ``transformer_lib`` below the check (IPython hides
  the check's own frame), and no chained exception.
"""
from __future__ import annotations

import inspect
import os
import sys
import warnings

import pytest
import torch
from torch import nn

import transformer_lib
from transformer_lib import checks
from transformer_lib.checks import CheckFailed, is_reference, yours

CHECKS = sorted((getattr(checks, name) for name in dir(checks) if name.startswith("check_")),
                key=lambda c: c.__name__)
LIBRARY = os.path.dirname(transformer_lib.__file__) + os.sep

# checks whose exercise takes no tensor, dict or module: nothing there to change in place
NOTHING_TO_CHANGE = {"check_sinusoidal_positional_encoding", "check_causal_mask", "check_rotation_for_offset",
                     "check_count_transformer_parameters", "check_noam_lr", "check_make_example",
                     "check_layer_name_map", "check_training_flops_per_token",
                     "check_average_gradients",      # its model's .grad is meant to change: the check judges it
                     "check_train_step",             # a training step is meant to change its model and optimizer
                     "check_Block", "check_MiniGPT"}    # classes built from sizes or a frozen GPTConfig


def ids(check):
    return check.__name__


def test_every_check_is_found():
    assert len(CHECKS) == 45
    assert all(callable(c.reference) and c.exercise_name for c in CHECKS)


@pytest.mark.parametrize("check", CHECKS, ids=ids)
def test_the_reference_lives_in_a_concept_module_not_in_checks(check):
    """checks/ only checks: each exercise's reference is the library's own function of that concept."""
    module = check.reference.__module__
    assert module.startswith("transformer_lib.") and not module.startswith("transformer_lib.checks"), module
    assert getattr(sys.modules[module], check.reference.__name__) is check.reference


@pytest.mark.parametrize("check", CHECKS, ids=ids)
def test_the_reference_passes_and_is_returned(check, capsys):
    assert check(check.reference) is check.reference
    assert f"✅ {check.exercise_name} is correct" in capsys.readouterr().out


def stub(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


@pytest.mark.parametrize("check", CHECKS, ids=ids)
def test_the_untouched_stub_is_not_implemented_yet_and_returns_the_reference(check, capsys):
    got = check(stub)
    assert got is check.reference and is_reference(got)
    out = capsys.readouterr().out
    assert f"⏳ {check.exercise_name} is not implemented yet" in out
    assert f"{check.reference.__module__}.{check.reference.__qualname__}" in out
    assert yours(got) == f"{check.reference.__name__} (library reference)"


def learners_own_not_implemented(*args, **kwargs):
    raise NotImplementedError("odd d_model is not supported")


@pytest.mark.parametrize("check", CHECKS, ids=ids)
def test_a_learners_own_not_implemented_error_is_judged(check, capsys):
    with pytest.raises(CheckFailed, match="raised NotImplementedError on .*: odd d_model is not supported") as info:
        check(learners_own_not_implemented)
    assert "not implemented yet" not in capsys.readouterr().out
    assert isinstance(info.value.learner_error, NotImplementedError)


def raising_after_the_first_call(reference):
    calls = []

    def fn(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise NotImplementedError()          # bare, but only for some inputs: the learner's code
        return reference(*args, **kwargs)
    return fn


@pytest.mark.parametrize("check", CHECKS, ids=ids)
def test_not_implemented_for_some_inputs_only_is_judged(check, capsys):
    with pytest.raises(CheckFailed, match="raised NotImplementedError on "):
        check(raising_after_the_first_call(check.reference))
    assert "not implemented yet" not in capsys.readouterr().out


def _corrupt(value) -> bool:
    """Change ``value`` in place (True if it could be changed)."""
    if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
        with torch.no_grad():
            if value.dtype == torch.bool:
                value.logical_not_()
            else:
                value.add_(1)
        return True
    if isinstance(value, dict):
        value["[corrupted]"] = -1
        return True
    return False


def changing_its_first_argument(reference, changed: list):
    """Right results, but the first tensor (or dict) argument is changed in place afterwards."""
    names = list(inspect.signature(reference).parameters)

    def fn(*args, **kwargs):
        result = reference(*args, **kwargs)
        for name, value in list(zip(names, args)) + list(kwargs.items()):
            if _corrupt(value):
                changed.append(name)
                break
        return result
    return fn


@pytest.mark.parametrize("check", CHECKS, ids=ids)
def test_changing_an_argument_in_place_fails_and_names_the_argument(check):
    changed = []
    fn = changing_its_first_argument(check.reference, changed)
    if check.__name__ in NOTHING_TO_CHANGE:
        assert check(fn) is fn and not changed
        return
    with pytest.raises(CheckFailed) as info:
        check(fn)
    message = str(info.value)
    assert changed and f"`{changed[0]}`" in message and "in place" in message, message


def changing_a_parameter(reference):
    def fn(layer, *args, **kwargs):
        result = reference(layer, *args, **kwargs)
        with torch.no_grad():
            layer.norm1.weight.mul_(2)
        return result
    return fn


def test_changing_a_modules_parameter_fails_and_names_it():
    with pytest.raises(CheckFailed, match=r"changed `layer\.norm1\.weight` in place"):
        checks.check_encoder_layer_forward(changing_a_parameter(checks.check_encoder_layer_forward.reference))


def wrong_on_purpose(reference):
    def fn(*args, **kwargs):
        result = reference(*args, **kwargs)
        if result is None:                 # an exercise that works in place on a model's gradients
            for value in args:
                if isinstance(value, nn.Module):
                    for p in value.parameters():
                        if p.grad is not None:
                            p.grad.mul_(2)
        return result * 2 + 1 if isinstance(result, torch.Tensor) else None
    return fn


@pytest.mark.parametrize("check", CHECKS, ids=ids)
def test_a_failure_shows_no_library_frame_and_no_chained_error(check):
    with pytest.raises(CheckFailed) as info:
        check(wrong_on_purpose(check.reference))
    error = info.value
    assert error.__cause__ is None and error.__suppress_context__
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    in_library = [f for f in frames if f.f_code.co_filename.startswith(LIBRARY)]
    # the check's own frame only, which IPython and pytest hide (__tracebackhide__), and never the last one
    assert [f.f_code.co_name for f in in_library] == ["check"], [f.f_code.co_filename for f in frames]
    assert in_library[0].f_locals.get("__tracebackhide__") and frames[-1] is not in_library[0]
    assert str(error).count(check.exercise_name + ":") == 1


def test_the_last_frame_of_an_error_raised_inside_the_library_is_the_learners_line():
    def decoder_layer_forward(layer, x, memory, tgt_mask=None, memory_mask=None):
        return layer.self_attn(x.transpose(1, 2), x, x)[0]        # the learner's line; the library raises
    with pytest.raises(CheckFailed, match="raised ValueError") as info:
        checks.check_decoder_layer_forward(decoder_layer_forward)
    tb = info.value.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code is decoder_layer_forward.__code__
    assert isinstance(info.value.learner_error, ValueError)


def test_warnings_from_the_learners_code_stay_out_of_the_output_and_a_known_one_becomes_a_note(recwarn):
    def attention_scores(q, k):
        return q @ k.T / q.shape[-1] ** 0.5                            # .T on a 4-D tensor warns
    with pytest.raises(CheckFailed) as info:
        checks.check_attention_scores(attention_scores)
    assert not [w for w in recwarn if "x.T" in str(w.message)]
    assert str(info.value).count("transpose(-2, -1)") >= 1

    def softmax(x):
        warnings.warn("a warning the learner cannot act on")
        return torch.softmax(x, dim=-1)
    assert checks.check_softmax(softmax) is softmax
    assert not [w for w in recwarn if "cannot act on" in str(w.message)]


def test_yours_labels_the_learners_function_and_the_reference():
    def feed_forward(x, w_1, b_1, w_2, b_2):
        return torch.relu(x @ w_1 + b_1) @ w_2 + b_2
    assert yours(feed_forward) == "your feed_forward"
    assert yours(feed_forward, "stack") == "your stack"
    reference = checks.check_feed_forward.reference
    assert yours(reference) == "feed_forward (library reference)"
    assert yours(reference, "stack") == "stack (library reference)"
    assert not is_reference(feed_forward) and is_reference(reference)


def test_a_check_leaves_the_thread_count_and_the_random_state_alone():
    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    for check in CHECKS:
        with pytest.raises(CheckFailed):
            check(wrong_on_purpose(check.reference))
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), state)


def test_the_learners_frame_is_kept_while_a_debugger_traces_too():
    """A debugger (or coverage) holds sys.settrace: the check falls back to sys.setprofile."""
    def attention_scores(q, k):
        return q @ k.transpose(-2, -1)                                  # not scaled: a wrong value
    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: None)
    try:
        with pytest.raises(CheckFailed, match="not scaled") as info:
            checks.check_attention_scores(attention_scores)
    finally:
        sys.settrace(previous)
    tb = info.value.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code is attention_scores.__code__
