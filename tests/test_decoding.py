"""Greedy decoding and beam search: <eos>, max_len, beam(1) = greedy, beam beats greedy (the cache: test_kv_cache)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from transformer_lib.decoding import (BOS_ID, EOS_ID, beam_search, greedy_decode, length_penalty,
                                      sequence_log_prob)
from transformer_lib.checks.training import decoding_test_model
from transformer_lib.masks import padding_mask
from transformer_lib.transformer import Transformer, TransformerConfig

V = 11


def eos_prone_model(seed: int = 0, eos_bias: float = 0.0) -> Transformer:
    """A random tiny model whose rows end with <eos> after different numbers of steps (the
    checks' test model; ``eos_bias`` shifts the <eos> logit: -10 means almost never)."""
    model = decoding_test_model(seed)
    with torch.no_grad():
        model.generator.bias[EOS_ID] += eos_bias
    return model


def source(B: int = 4, S: int = 7, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 13, (B, S), generator=g)
    src[0, 5:] = 0                                # padding in one row
    return src


def naive_greedy(model, src, max_len):
    """Greedy decoding as lesson 08's exercise writes it: the default target mask, the whole prefix every step."""
    src_mask = padding_mask(src, 0)
    memory = model.encode(src, src_mask)
    ys = torch.full((src.shape[0], 1), BOS_ID)
    done = torch.zeros(src.shape[0], dtype=torch.bool)
    for _ in range(max_len):
        nxt = model.generator(model.decode(ys, memory, memory_mask=src_mask))[:, -1].argmax(-1)
        nxt = nxt.masked_fill(done, 0)
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        done |= nxt == EOS_ID
        if done.all():
            break
    return ys[:, 1:]


def test_greedy_equals_the_lessons_loop_and_pads_after_eos():
    model, src = eos_prone_model(), source()
    out = greedy_decode(model, src, max_len=12)
    assert torch.equal(out, naive_greedy(model, src, 12))
    ends = [(row == EOS_ID).nonzero()[0, 0].item() if (row == EOS_ID).any() else None for row in out]
    assert len(set(ends)) > 1, "the test model should end its rows at different lengths"
    for row in out:                                               # padding after the first <eos>
        hits = (row == EOS_ID).nonzero()
        if len(hits):
            assert (row[hits[0, 0] + 1:] == 0).all()


def test_greedy_calls_encode_once():
    model, src = eos_prone_model(), source()
    calls = []
    model.encoder.register_forward_hook(lambda *args: calls.append(1))
    greedy_decode(model, src, max_len=12)
    assert len(calls) == 1


@pytest.mark.parametrize("max_len", [1, 2, 5])
def test_decoding_never_runs_past_max_len(max_len):
    model = eos_prone_model(eos_bias=-10.0)                         # <eos> almost never: the limit must stop it
    src = source()
    greedy = greedy_decode(model, src, max_len=max_len)
    assert greedy.shape == (4, max_len)
    for K in (1, 3):
        ids, scores = beam_search(model, src, max_len=max_len, beam_size=K)
        assert ids.shape[1] <= max_len and scores.shape == (4,)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_of_one_is_greedy(seed):
    model, src = eos_prone_model(seed), source(seed=seed)
    ids, scores = beam_search(model, src, max_len=15, beam_size=1)
    assert torch.equal(ids, greedy_decode(model, src, max_len=15))
    torch.testing.assert_close(scores, sequence_log_prob(model, src, ids))


def test_beam_scores_are_the_models_log_probabilities():
    model, src = eos_prone_model(3), source(B=3, seed=4)
    ids, scores = beam_search(model, src, max_len=10, beam_size=4, alpha=0.0)
    torch.testing.assert_close(scores, sequence_log_prob(model, src, ids))
    ids2, scores2 = beam_search(model, src, max_len=10, beam_size=4, alpha=1.0)
    lengths = ((ids2 != 0).sum(dim=1)).float()
    torch.testing.assert_close(scores2, sequence_log_prob(model, src, ids2) / length_penalty(lengths, 1.0))


def test_wider_beams_never_score_worse_on_a_random_model():
    model, src = eos_prone_model(5), source(B=4, seed=7)
    greedy_score = sequence_log_prob(model, src, greedy_decode(model, src, max_len=8))
    _, beam_score = beam_search(model, src, max_len=8, beam_size=6)
    assert (beam_score >= greedy_score - 1e-5).all()


def test_length_penalty():
    assert length_penalty(1, 0.0) == 1.0
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    assert length_penalty(torch.tensor([1.0, 7.0]), 0.5).tolist() == pytest.approx([1.0, math.sqrt(2)])


class ToyModel(nn.Module):
    """A 'model' with a hand-written next-token distribution that depends on the prefix.

    Tokens: 0 <pad>, 1 <unk>, 2 <bos>, 3 <eos>, 4 A, 5 B.
    After <bos>: A 0.6, B 0.4. After A: <eos> 0.35, A 0.33, B 0.32. After B: <eos> 0.99.
    Greedy takes A then <eos> (0.6 * 0.35 = 0.21); the best sequence is B <eos> (0.396).
    """

    def __init__(self):
        super().__init__()
        self.config = TransformerConfig(src_vocab_size=6, tgt_vocab_size=6, d_model=6, num_heads=1, num_layers=1)
        self.generator = nn.Identity()

    def encode(self, src, src_mask=None):
        return torch.zeros(src.shape[0], src.shape[1], 6)

    def decode(self, tgt, memory, tgt_mask=None, memory_mask=None, cache=None):
        assert cache is None, "this toy model decodes the whole prefix every step"
        prefix = tgt                                        # (B, t): every token fed so far
        probs = torch.full((tgt.shape[0], 6), 1e-6)
        for row, p in enumerate(prefix.tolist()):
            last = p[-1]
            if last == 2:
                probs[row, 4], probs[row, 5] = 0.6, 0.4
            elif last == 4:
                probs[row, 3], probs[row, 4], probs[row, 5] = 0.35, 0.33, 0.32
            elif last == 5:
                probs[row, 3], probs[row, 4] = 0.99, 0.01
            else:
                probs[row, 3] = 1.0
        return probs.log()[:, None, :].expand(-1, tgt.shape[1], -1)   # (B, t, V): log-probabilities as "states"


def test_beam_search_finds_a_more_probable_sequence_than_greedy():
    model, src = ToyModel(), torch.ones(2, 3, dtype=torch.long)
    greedy = greedy_decode(model, src, max_len=5)
    assert greedy.tolist() == [[4, 3], [4, 3]]
    ids, scores = beam_search(model, src, max_len=5, beam_size=2)
    assert ids.tolist() == [[5, 3], [5, 3]]
    assert scores.tolist() == pytest.approx([math.log(0.4 * 0.99)] * 2, rel=1e-4)
    assert math.log(0.4 * 0.99) > math.log(0.6 * 0.35)
    ids1, _ = beam_search(model, src, max_len=5, beam_size=1)
    assert torch.equal(ids1, greedy)


def test_length_penalty_can_prefer_longer_outputs():
    """Without a penalty beam search prefers short outputs; alpha > 0 evens that out."""
    model, src = eos_prone_model(2, eos_bias=-1.0), source(B=4, seed=3)
    short, _ = beam_search(model, src, max_len=12, beam_size=5, alpha=0.0)
    long, _ = beam_search(model, src, max_len=12, beam_size=5, alpha=2.0)
    assert (long != 0).sum() > (short != 0).sum()


def test_bad_arguments():
    model, src = eos_prone_model(), source()
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, src, max_len=0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, src, max_len=3, beam_size=0)
    with pytest.raises(TypeError):
        greedy_decode(model, src.float(), max_len=3)


def test_the_model_and_ids_are_checked():
    model, src = eos_prone_model(), source()
    with pytest.raises(TypeError, match=r"model must be an encoder-decoder such as Transformer.*Linear lacks \['encode'"):
        greedy_decode(nn.Linear(2, 2), src, max_len=3)
    with pytest.raises(TypeError, match="eos_id must be an int >= 0, got float 3.0"):
        greedy_decode(model, src, max_len=3, eos_id=3.0)
    with pytest.raises(TypeError, match="alpha must be a number >= 0"):
        beam_search(model, src, max_len=3, alpha="0.6")
