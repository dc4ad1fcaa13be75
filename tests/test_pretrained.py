"""Lesson 13: the verified weights, the config, the name table, the loader's checks, the embeddings
(against stored sentence-transformers results) and semantic search."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re

import pytest
import torch

import transformer_lib.pretrained as P
import transformer_lib.sentence_encoder as SE
from transformer_lib.bert import BertConfig, BertModel
from conftest import ROOT

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def state():
    return P.load_checkpoint()


@pytest.fixture(scope="module")
def encoder(state):
    return SE.SentenceEncoder(P.load_pretrained(state=state), P.load_tokenizer())


# --- the weights: pinned, installed, verified --------------------------------------------------

def test_weights_file_is_the_upstream_one():
    path = P.model_dir() / "model.safetensors"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == P.MODEL_SHA256 == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    assert P.verify_weights() == digest


def test_verify_rejects_another_file(tmp_path):
    other = tmp_path / "model.safetensors"
    other.write_bytes(b"not the weights")
    with pytest.raises(P.CheckpointError, match="sha256"):
        P.verify_weights(other)
    with pytest.raises(P.CheckpointError, match="sha256"):
        P.load_checkpoint(other)


def test_the_installed_weights_package_is_the_pinned_one():
    assert importlib.metadata.version(P.WEIGHTS_DISTRIBUTION) == P.WEIGHTS_VERSION
    pins = [line.strip() for line in (ROOT / "requirements-weights.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins == [f"{P.WEIGHTS_DISTRIBUTION}=={P.WEIGHTS_VERSION}"]
    files = {p.name for p in P.model_dir().iterdir()}
    assert {"model.safetensors", "config.json", "vocab.txt"} <= files


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(P.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="requirements-weights.txt"):
        P.model_dir()


# --- the config ----------------------------------------------------------------------------------

def test_config_from_the_checkpoint():
    c = P.read_config()
    assert c == BertConfig(vocab_size=30522, d_model=384, num_heads=12, num_layers=6, d_ff=1536, max_len=512,
                           type_vocab_size=2, dropout=0.0, activation="gelu", layer_norm_eps=1e-12,
                           norm_first=False, pad_id=0)
    assert P.read_pooling_config()["pooling_mode_mean_tokens"] is True


@pytest.mark.parametrize("change, words", [
    ({"model_type": "gpt2"}, "model_type='gpt2'"),
    ({"position_embedding_type": "relative_key"}, "relative_key"),
    ({"hidden_act": "swish"}, "hidden_act='swish'"),
    ({"hidden_act": "gelu_new"}, None),
])
def test_config_errors(tmp_path, change, words):
    raw = P.read_raw_config()
    raw.update(change)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    if words is None:
        assert P.read_config(path).activation == "gelu_tanh"
    else:
        with pytest.raises(P.CheckpointError, match=re.escape(words)):
            P.read_config(path)


# --- the name table ------------------------------------------------------------------------------

def test_name_table_uses_every_checkpoint_tensor_once_and_fills_every_parameter(state):
    config = P.read_config()
    table = P.name_table(config.num_layers)
    ours = BertModel(config).state_dict()
    assert set(table) | set(P.CHECKED_BUFFERS) == set(state)
    assert sorted(table.values()) == sorted(ours)                          # a bijection onto our parameters
    assert len(state) == 104 and len(table) == 5 + 16 * 6 + 2


def test_name_table_is_printed_readably(state):
    text = P.format_name_table(state=state)
    assert re.search(r"encoder\.layer\.0\.attention\.self\.query\.weight\s+→ encoder\.layers\[0\]\.self_attn\.w_q\.weight"
                     r"  \(384, 384\)", text)
    assert "same for layers 1-5" in text and "embeddings.position_ids" in text
    assert P.module_path("encoder.layers.10.norm1.bias") == "encoder.layers[10].norm1.bias"


def test_layer_name_map_accepts_module_paths():
    bracket = lambda i: {k: P.module_path(v) for k, v in P.layer_name_map(i).items()}   # noqa: E731
    assert P.name_table(2, bracket) == P.name_table(2)
    with pytest.raises(ValueError, match="layer index"):
        P.layer_name_map(-1)


# --- the loader's checks, on a tiny model -------------------------------------------------------

TINY = BertConfig.tiny(vocab_size=11, d_model=12, num_heads=3, num_layers=2, d_ff=20, max_len=9)


def tiny_checkpoint() -> dict[str, torch.Tensor]:
    """A checkpoint with Hugging Face names for a tiny random BertModel."""
    torch.manual_seed(1)
    params = BertModel(TINY).state_dict()
    state = {theirs: params[ours].clone() for theirs, ours in P.name_table(TINY.num_layers).items()}
    state["embeddings.position_ids"] = torch.arange(TINY.max_len)[None]
    return state


def test_loader_copies_every_tensor():
    state = tiny_checkpoint()
    model = P.load_weights(BertModel(TINY), state)
    assert torch.equal(model.encoder.layers[1].self_attn.w_k.weight, state["encoder.layer.1.attention.self.key.weight"])
    assert torch.equal(model.encoder.layers[0].feed_forward.linear2.bias, state["encoder.layer.0.output.dense.bias"])
    assert torch.equal(model.embeddings.embed.weight, state["embeddings.word_embeddings.weight"])


def test_loader_names_a_missing_tensor():
    state = tiny_checkpoint()
    del state["encoder.layer.1.attention.self.value.bias"]
    with pytest.raises(P.CheckpointError, match=r"'encoder\.layer\.1\.attention\.self\.value\.bias' is missing.*"
                                                r"encoder\.layers\[1\]\.self_attn\.w_v\.bias"):
        P.load_weights(BertModel(TINY), state)


def test_loader_names_an_extra_tensor():
    state = tiny_checkpoint()
    state["cls.predictions.bias"] = torch.zeros(11)
    with pytest.raises(P.CheckpointError, match=r"'cls\.predictions\.bias' \(11,\) is not used"):
        P.load_weights(BertModel(TINY), state)


def test_loader_names_a_wrong_shape():
    state = tiny_checkpoint()
    state["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(12, 20)
    with pytest.raises(P.CheckpointError, match=r"'encoder\.layer\.0\.intermediate\.dense\.weight' has shape \(12, 20\) "
                                                r"but 'encoder\.layers\[0\]\.feed_forward\.linear1\.weight' has shape \(20, 12\)"):
        P.load_weights(BertModel(TINY), state)


def test_loader_names_bad_positions_a_double_mapping_and_an_unknown_parameter():
    state = tiny_checkpoint()
    state["embeddings.position_ids"] = torch.arange(TINY.max_len)[None].flip(-1)
    with pytest.raises(P.CheckpointError, match="embeddings.position_ids"):
        P.load_weights(BertModel(TINY), state)
    state = tiny_checkpoint()
    table = P.name_table(TINY.num_layers)
    table["encoder.layer.0.attention.self.key.weight"] = table["encoder.layer.0.attention.self.query.weight"]
    with pytest.raises(P.CheckpointError, match=r"'encoder\.layers\[0\]\.self_attn\.w_q\.weight' would receive two") as e:
        P.load_weights(BertModel(TINY), state, table)
    assert "encoder.layers[0].self_attn.w_k.weight' receives no checkpoint tensor" in str(e.value)
    table = P.name_table(TINY.num_layers)
    table["pooler.dense.bias"] = "pooler.b"
    with pytest.raises(P.CheckpointError, match=r"'pooler\.dense\.bias' is mapped to 'pooler\.b', which our model"):
        P.load_weights(BertModel(TINY), state, table)
    with pytest.raises(TypeError, match="BertModel"):
        P.load_weights(torch.nn.Linear(2, 2), state)


def test_loaded_model_has_the_checkpoint_weights(encoder, state):
    m = encoder.model
    assert not m.training
    assert torch.equal(m.encoder.layers[5].norm2.weight, state["encoder.layer.5.output.LayerNorm.weight"])
    assert torch.equal(m.encoder.layers[3].self_attn.w_o.weight, state["encoder.layer.3.attention.output.dense.weight"])
    assert m.num_parameters() == sum(t.numel() for k, t in state.items() if k not in P.CHECKED_BUFFERS)


# --- the embeddings, against sentence-transformers itself -------------------------------------

def test_embeddings_match_the_reference_implementation(encoder):
    sentences, reference = SE.load_reference_embeddings()
    assert reference.shape == (len(sentences), 384) and len(sentences) >= 20
    ours = encoder.encode(sentences, batch_size=8)                          # sorted, batched
    assert (ours - reference).abs().max().item() <= TOLERANCE
    assert (ours * reference).sum(-1).min().item() >= 0.99999
    hidden, mask = encoder.hidden_states(sentences)                         # one batch, heavily padded
    assert mask.sum(1).min() <= 3 and mask.sum(1).max() == P.MAX_SEQ_LENGTH
    pooled = SE.pool_sentence_embeddings(hidden, mask)
    assert (pooled - reference).abs().max().item() <= TOLERANCE
    assert torch.allclose(SE.encode(sentences[:3]), reference[:3], atol=TOLERANCE)


def test_mean_pooling_ignores_padding():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 7, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = SE.mean_pooling(hidden, mask)
    assert torch.allclose(pooled[0], hidden[0, :3].mean(0)) and torch.allclose(pooled[1], hidden[1].mean(0))
    noisy = hidden.clone()
    noisy[0, 3:] = 1e3
    assert torch.allclose(SE.mean_pooling(noisy, mask.bool()), pooled)
    unit = SE.pool_sentence_embeddings(hidden, mask)
    assert torch.allclose(unit.norm(dim=-1), torch.ones(2)) and torch.allclose(unit, pooled / pooled.norm(dim=-1, keepdim=True))
    with pytest.raises(ValueError, match="attention_mask must be"):
        SE.mean_pooling(hidden, mask[:, :4])


def test_semantic_search(encoder):
    sentences, topics = SE.load_corpus()
    assert len(sentences) == 300 == len(set(sentences)) and len(set(topics)) == 12
    corpus = encoder.encode(sentences)
    scores, idx = SE.semantic_search(corpus[:4], corpus, top_k=3)
    assert idx.shape == scores.shape == (4, 3)
    assert idx[:, 0].tolist() == [0, 1, 2, 3] and torch.allclose(scores[:, 0], torch.ones(4), atol=1e-5)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    queries = {"How do I make bread rise?": "cooking", "Which planet is the biggest?": "space",
               "My computer does not start.": "computers", "Will it rain tomorrow?": "weather"}
    scores, idx = SE.semantic_search(encoder.encode(list(queries)), corpus, top_k=1)
    assert [topics[i] for i in idx[:, 0].tolist()] == list(queries.values())
    with pytest.raises(ValueError, match="top_k"):
        SE.semantic_search(corpus[0], corpus, top_k=301)
    with pytest.raises(ValueError, match="features"):
        SE.semantic_search(corpus[:, :5], corpus)
    with pytest.raises(TypeError, match="list of str"):
        encoder.encode([1, 2])
    with pytest.raises(TypeError, match="queries must be a torch.Tensor"):
        SE.semantic_search([0.0] * 384, corpus)


def test_encode_keeps_no_attention_weights_and_bounds_its_batches(encoder, monkeypatch):
    calls = []
    forward = encoder.model.forward
    monkeypatch.setattr(encoder.model, "forward", lambda ids, *a: calls.append(tuple(ids.shape)) or forward(ids, *a))
    long_text = " ".join(SE.load_corpus()[0][:40])                        # truncated to 256 tokens
    encoder.encode(["short one"] * 3 + [long_text] * 9, batch_size=32)
    assert calls == [(8, 256), (4, 256)]                                  # 8 * 256 * 256 = 2 ** 19 entries
    assert all(B * T * T <= encoder.max_attention_entries for B, T in calls)
    assert all(w is None for w in encoder.model.attention_weights())


def test_attention_maps_and_head_roles(encoder):
    tokens, w = SE.attention_maps(encoder, "The cat sat on the mat.")
    assert tokens == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"]
    assert w.shape == (6, 12, 9, 9) and torch.allclose(w.sum(-1), torch.ones(6, 12, 9), atol=1e-5)
    scores = SE.head_role_scores(encoder, ["The cat sat on the mat.", "A dog and a cat and a bird."])
    assert set(scores) == {"previous token", "next token", "[CLS] / [SEP]", "same word"}
    for s in scores.values():
        assert s.shape == (6, 12) and 0 <= s.min() and s.max() <= 1 + 1e-6
    assert scores["previous token"].max() > 0.9                            # a head that looks one token back
    # batched with padding == one sentence at a time
    one_by_one = [SE.head_role_scores(encoder, [s]) for s in ["The cat sat on the mat.", "A dog and a cat and a bird."]]
    batched = SE.head_role_scores(encoder, ["The cat sat on the mat.", "A dog and a cat and a bird."], batch_size=2)
    assert torch.allclose(batched["next token"], (one_by_one[0]["next token"] * 7 + one_by_one[1]["next token"] * 9) / 16,
                          atol=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        SE.head_role_scores(encoder, [])


def test_head_value_vectors_rebuild_the_attention_output():
    """sum_h weights_h @ f_h + b_O is the layer's output: the vectors are what the weights mix."""
    from transformer_lib.multi_head_attention import MultiHeadAttention

    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 3).eval()
    x = torch.randn(2, 5, 12)
    out, weights = mha(x, x, x, need_weights=True)
    f = SE.head_value_vectors(mha, x)                                                      # (B, H, T, D)
    assert f.shape == (2, 3, 5, 12)
    assert torch.allclose((weights @ f).sum(1) + mha.w_o.bias, out, atol=1e-5)
    with pytest.raises(TypeError, match="MultiHeadAttention"):
        SE.head_value_vectors(torch.nn.Linear(12, 12), x)


def test_weighted_value_norms(encoder):
    sentence = "The cat sat on the mat."
    tokens, weights, norms = SE.weighted_value_norms(encoder, sentence)
    same_tokens, same_weights = SE.attention_maps(encoder, sentence)
    assert tokens == same_tokens and torch.equal(weights, same_weights) and norms.shape == (6, 12, 9, 9)
    lengths = norms / weights                                          # ||f_h(x_j)||: the same in every row i
    assert torch.allclose(lengths, lengths[:, :, :1, :].expand_as(lengths), rtol=1e-4)
    assert (lengths > 0).all()
    # the layer's input as the hook saw it: layer 0's is the embeddings' output
    x = encoder.model.embeddings(*[encoder.tokenizer([sentence])[k] for k in ("input_ids", "token_type_ids")])
    f = SE.head_value_vectors(encoder.model.encoder.layers[0].self_attn, x)[0]            # (H, T, D)
    assert torch.allclose(lengths[0, :, 0], f.norm(dim=-1), rtol=1e-4)
    assert all(m.self_attn._forward_pre_hooks == {} for m in encoder.model.encoder.layers)  # hooks removed
    with pytest.raises(TypeError, match="SentenceEncoder"):
        SE.weighted_value_norms(encoder.model, sentence)


def test_shipped_data_is_package_data():
    from importlib import resources
    folder = resources.files("transformer_lib") / "data_files"
    for name in ("sentences.tsv", "reference_embeddings.npz", "reference_wordpiece.json"):
        assert (folder / name).is_file(), name


def test_loading_arguments_are_checked(tmp_path):
    broken = tmp_path / "config.json"
    broken.write_bytes(b"\x80 not json")
    with pytest.raises(P.CheckpointError, match=r"config.json is not a JSON config file"):
        P.read_raw_config(broken)
    with pytest.raises(TypeError, match=r"path must be a file path \(a str or a pathlib.Path\), got int 1"):
        P.sha256_of(1)                                  # open(1) would read (and then close) stdout
    tiny = BertModel(BertConfig.tiny(30, d_model=8, num_heads=2, num_layers=1, d_ff=16, max_len=8))
    with pytest.raises(TypeError, match=r"state must be a dict \{name: Tensor\}, got list"):
        P.load_weights(tiny, [])
    with pytest.raises(TypeError, match=r"state must map names \(str\) to Tensor, got 'a': float"):
        P.load_weights(tiny, {"a": 1.0})
    with pytest.raises(TypeError, match="key must be a state_dict key"):
        P.module_path(3)
    with pytest.raises(TypeError, match=r"hidden must be a float tensor"):
        SE.mean_pooling(torch.ones(2, 3, 4, dtype=torch.long), torch.ones(2, 3))


def test_the_sentence_tools_moved_and_their_old_names_still_work():
    with pytest.warns(DeprecationWarning, match="transformer_lib.pretrained.semantic_search is deprecated: use "
                                                "transformer_lib.sentence_encoder.semantic_search"):
        assert P.semantic_search is SE.semantic_search
