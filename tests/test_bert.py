"""Lesson 10: the encoder-only BERT model, its heads, and the generated review text."""
from __future__ import annotations

import pytest
import torch

from conftest import B, D, H
from transformer_lib.bert import BertClassifier, BertConfig, BertForMaskedLM, BertModel
from transformer_lib.toy_text import CLS, MASK, SEP, ReviewWorld, python_source_corpus

V = 17


def tiny(**changes):
    torch.manual_seed(0)
    return BertConfig.tiny(V, d_model=D, num_heads=H, num_layers=2, d_ff=20, max_len=16, dropout=0.0, **changes)


def test_shapes_pooler_and_tied_head():
    mlm = BertForMaskedLM(tiny()).eval()
    ids = torch.randint(1, V, (B, 7))
    assert mlm.bert(ids).shape == (B, 7, D)
    assert mlm(ids).shape == (B, 7, V)
    assert mlm.bert.pooled(mlm.bert(ids)).shape == (B, D)
    assert mlm.head.generator.weight is mlm.bert.embeddings.embed.weight
    clf = BertClassifier(mlm.bert, 3).eval()
    assert clf(ids).shape == (B, 3) and clf.bert is mlm.bert


def test_bert_attends_both_ways():
    """Unlike GPT, changing a *later* token changes the vectors of earlier ones."""
    model = BertModel(tiny()).eval()
    ids = torch.randint(1, V, (1, 7))
    base = model(ids)
    changed = ids.clone()
    changed[0, 6] = (changed[0, 6] % (V - 1)) + 1
    out = model(changed)
    assert not torch.allclose(out[0, 0], base[0, 0], atol=1e-5)
    for w in model.attention_weights():
        assert (w[0, :, 0, 1:] > 0).all()                        # the first token looks ahead too


def test_padding_is_ignored():
    model = BertModel(tiny()).eval()
    ids = torch.randint(1, V, (1, 5))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    assert torch.allclose(model(padded)[:, :5], model(ids), atol=1e-5)
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    assert torch.allclose(model(ids, attention_mask=mask)[:, :3], model(ids[:, :3]), atol=1e-5)


def test_segments_are_optional():
    model = BertModel(tiny(type_vocab_size=0)).eval()
    assert model.embeddings.token_type is None
    ids = torch.randint(1, V, (B, 4))
    assert model(ids).shape == (B, 4, D)
    with_segments = BertModel(tiny()).eval()
    assert not torch.allclose(with_segments(ids, torch.ones_like(ids)), with_segments(ids), atol=1e-6)


def test_bert_base_parameter_count():
    with torch.device("meta"):
        model = BertModel(BertConfig.base())
    assert model.num_parameters() == 109_482_240                  # bert-base-uncased's encoder


@pytest.mark.parametrize("changes", [dict(d_model=10, num_heads=3), dict(vocab_size=0), dict(dropout=1.0),
                                     dict(activation="swish"), dict(pad_id=V), dict(type_vocab_size=-1)])
def test_config_errors(changes):
    fields = dict(vocab_size=V, d_model=D, num_heads=H, num_layers=2, d_ff=20, max_len=16)
    fields.update(changes)
    with pytest.raises(ValueError):
        BertConfig(**fields)


def test_model_errors():
    with pytest.raises(TypeError, match="BertConfig"):
        BertModel("tiny")
    model = BertModel(tiny())
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.ones(1, 4, dtype=torch.long), attention_mask=torch.ones(1, 3))


def test_review_world_vocabulary_and_sentences():
    world = ReviewWorld()
    tok = world.tokenizer
    assert [tok.itos[i] for i in (world.cls_id, world.sep_id, world.mask_id)] == [CLS, SEP, MASK]
    assert world.num_special == 7 and world.mask_id < world.num_special
    assert set(world.positive).isdisjoint(world.negative)
    sentences = world.pretraining_sentences(200, seed=0)
    assert sentences == world.pretraining_sentences(200, seed=0) != world.pretraining_sentences(200, seed=1)
    ids = world.encode(sentences)
    assert (ids[:, 0] == world.cls_id).all() and (ids == world.sep_id).sum() == 200
    assert (ids[ids != 0] >= world.num_special).sum() == (ids != 0).sum() - 400
    assert world.decode(ids[0]) == f"{CLS} {sentences[0]} {SEP}"
    # every pre-training sentence uses adjectives of one sentiment only
    for s in sentences:
        kinds = {world.sentiment[w] for w in s.split() if w in world.sentiment}
        assert len(kinds) == 1


def test_labelled_task_is_balanced_and_told_by_the_adjective():
    world = ReviewWorld()
    texts, labels = world.labelled_examples(50, seed=3)
    assert sum(labels) == 25
    for text, label in zip(texts, labels):
        adjectives = [w for w in text.split() if w in world.sentiment]
        assert len(adjectives) == 1 and world.sentiment[adjectives[0]] == label
    ids = world.encode(["the film was [MASK] ."])
    assert ids[0, 4] == world.mask_id
    with pytest.raises(ValueError, match="not in the vocabulary"):
        world.encode(["the spaceship was great ."])
    with pytest.raises(TypeError):
        world.encode("the film was great .")


def test_python_source_corpus_is_the_standard_library():
    import difflib
    text = python_source_corpus()
    assert text.startswith('"""') and "class SequenceMatcher" in text
    assert len(text) == len(open(difflib.__file__, encoding="utf-8").read())
    assert len(python_source_corpus(max_chars=100)) == 100
    with pytest.raises(ValueError, match="no .py source"):
        python_source_corpus(("sys",))



def test_attention_mask_conventions():
    """Bool or 0/1 integers (Hugging Face's) mean the same; a float mask is refused, never inverted."""
    model = BertModel(tiny()).eval()
    ids = torch.randint(1, V, (B, 6))
    keep = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    out = model(ids, attention_mask=keep)
    torch.testing.assert_close(model(ids, attention_mask=keep.long()), out)
    torch.testing.assert_close(model(ids[1:, :4])[0], out[1, :4])
    additive = torch.zeros(B, 6).masked_fill(~keep, float("-inf"))          # 0 = attend, -inf = blocked
    with pytest.raises(TypeError, match=r"attention_mask must be a bool tensor or a 0/1 integer tensor .*got dtype "
                                        r"torch.float32; .*additive float mask \(0 / -inf\) use mask == 0"):
        model(ids, attention_mask=additive)
    with pytest.raises(ValueError, match=r"only 0 \(padding\) and 1 \(real token\).*did you pass the token ids"):
        model(ids, attention_mask=ids)
    with pytest.raises(ValueError, match=r"token_type_ids must have the shape of ids \(2, 6\)"):
        model(ids, token_type_ids=torch.zeros(B, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="num_labels must be a positive int"):
        BertClassifier(model, 2.0)


def test_old_names_still_work_with_a_deprecation_warning():
    mlm = BertForMaskedLM(tiny())
    with pytest.warns(DeprecationWarning, match="MaskedLMHead.decoder is deprecated: use MaskedLMHead.generator"):
        assert mlm.head.decoder is mlm.head.generator
    with pytest.warns(DeprecationWarning, match="BertEmbeddings.token is deprecated: use BertEmbeddings.embed"):
        assert mlm.bert.embeddings.token is mlm.bert.embeddings.embed
