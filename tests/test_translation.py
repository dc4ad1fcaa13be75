"""Lesson 09's data (the shipped subset follows the extraction script's rules), the task's
batching, the scores (sacrebleu, all references) and translation with both model families."""
from __future__ import annotations

from collections import Counter
from importlib import resources

import pytest
import torch

import extract_translation_subset as ex
from transformer_lib.bpe import BPETokenizer, WordTokenizer
from transformer_lib.translation import (Pair, TranslationTask, bleu, chrf, exact_match_any, group_references,
                                         load_pairs, translate)


@pytest.fixture(scope="module")
def pairs():
    return load_pairs()


# -- the rule, on crafted lines -----------------------------------------------------------------

@pytest.mark.parametrize("english, french, kept", [
    ("I'm cold.", "J'ai froid.", True),
    ("I am cold.", "J'ai froid.", True),
    ("i'm cold.", "J'ai froid.", True),                          # the rule looks at the lower-cased text
    ("I’m cold.", "J'ai froid.", True),                          # typographic apostrophe
    ("I‘m ironing my handkerchiefs.", "Je repasse mes mouchoirs.", True),
    ("They're here.", "Ils sont là.", True),
    ("He's a one two three four five six seven eight.", "Il est là.", True),   # exactly 10 words
    ("He's a one two three four five six seven eight nine.", "Il est là.", False),  # 11 English words
    ("He's here.", "Il est ici un deux trois quatre cinq six sept huit.", False),  # 11 French words
    ("You're late\u00a0!", "Tu es en retard\u00a0!", True),
    ("Were you busy?", "Étais-tu occupé ?", False),             # "we" + "re" but not "we're "
    ("He isn't here.", "Il n'est pas là.", False),              # "he is" must be followed by a space
    ("Hes here.", "Il est là.", False),
    ("He is, indeed, a lovely man.", "C'est vraiment un homme adorable.", False),
    ("I was cold.", "J'avais froid.", False),
])
def test_keep_pair_rule(english, french, kept):
    assert ex.keep_pair(english, french) is kept


def test_word_count_splits_at_no_break_spaces():
    assert ex.word_count("Tu es en retard\u00a0!") == 5
    assert ex.word_count("  un   deux ") == 2


def test_split_by_english_is_disjoint_sized_and_seeded():
    englishes = [f"I'm {i}." for i in range(200)] * 2
    split = ex.split_by_english(englishes, seed=3)
    assert Counter(split.values()) == {"test": 10, "dev": 10, "train": 180}
    assert split == ex.split_by_english(englishes, seed=3)
    assert split != ex.split_by_english(englishes, seed=4)


# -- the shipped file follows the script -------------------------------------------------------

def test_shipped_subset_has_the_documented_counts(pairs):
    assert len(pairs) == ex.EXPECTED_PAIRS == 14_613
    assert len({p.source for p in pairs}) == ex.EXPECTED_ENGLISH == 9_180
    assert Counter(p.split for p in pairs) == {"train": 13_095, "dev": 739, "test": 779}
    assert Counter(s for s in ex.split_by_english([p.source for p in pairs]).values()) == \
        {"train": 8_262, "dev": 459, "test": 459}


def test_shipped_subset_passes_the_rule_and_the_script_writes_it_again(pairs):
    assert all(ex.keep_pair(p.source, p.target) for p in pairs)           # the filter is idempotent on it
    lines = ex.subset_lines([(p.source, p.target) for p in pairs])      # filter + split from the seed
    shipped = (resources.files("transformer_lib") / "data_files" / "tatoeba_en_fr.tsv").read_text(encoding="utf-8")
    assert "\n".join(lines) + "\n" == shipped


def test_split_is_by_english_sentence_and_keeps_every_reference(pairs):
    splits_of = {}
    for p in pairs:
        splits_of.setdefault(p.source, set()).add(p.split)
    assert all(len(s) == 1 for s in splits_of.values())
    sources, refs = group_references([p for p in pairs if p.split == "test"])
    assert len(sources) == 459 and sum(map(len, refs)) == 779 and max(map(len, refs)) > 3


def test_licence_and_attribution_ship_beside_the_data():
    folder = resources.files("transformer_lib") / "data_files"
    text = (folder / "tatoeba_en_fr_LICENSE.txt").read_text(encoding="utf-8")
    assert "CC-BY 2.0" in text and "www.manythings.org/anki" in text and "tatoeba.org" in text
    assert "tatoeba_en_fr_LICENSE.txt" in (folder / "tatoeba_en_fr.tsv").read_text(encoding="utf-8")[:600]


def test_load_pairs_rejects_a_malformed_file(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("# comment\ntrain\tI'm cold.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        load_pairs(path)


# -- the task and the scores ------------------------------------------------------------------

SMALL = [Pair("I'm cold.", "J'ai froid.", "train"), Pair("I'm cold.", "Je me gèle.", "train"),
         Pair("He's tall.", "Il est grand.", "train"), Pair("She's tired.", "Elle est fatiguée.", "train"),
         Pair("We're late.", "Nous sommes en retard.", "dev"), Pair("You're tall.", "Tu es grand.", "test"),
         Pair("You're tall.", "Vous êtes grand.", "test")]


def small_task():
    tok = BPETokenizer.train([p.source for p in SMALL] + [p.target for p in SMALL], num_merges=30, min_count=1)
    return TranslationTask(tok, SMALL)


def test_task_batches_like_lesson_08():
    task = small_task()
    assert (len(task.train), len(task.dev), len(task.test)) == (4, 1, 2)
    batches = task.batches("train", batch_size=3)
    assert sum(len(b) for b in batches) == 4
    b = batches[0]
    assert b.tgt_in.shape == b.tgt_out.shape and bool((b.tgt_in[:, 0] == task.tgt_tokenizer.bos_id).all())
    assert task.references("test") == (["You're tall."], [["Tu es grand.", "Vous êtes grand."]])
    stream = task.batch_stream(batch_size=2)
    assert stream(1).src.shape[0] == 2
    with pytest.raises(ValueError, match="every split"):
        TranslationTask(task.src_tokenizer, SMALL[:4])
    with pytest.raises(TypeError, match="must be a Tokenizer"):
        TranslationTask("not a tokenizer", SMALL)


def test_word_level_task_has_unknowns():
    words = WordTokenizer.from_texts([p.target for p in SMALL if p.split == "train"], min_count=1)
    ids = words.encode("Tu es grand.")
    assert ids.count(words.unk_id) == 2                                      # "▁Tu", "▁es"


def test_bleu_and_chrf_use_every_reference():
    refs = [["Tu es grand.", "Vous êtes grand."], ["Il est là."]]
    assert bleu(["Vous êtes grand.", "Il est là."], refs).score == pytest.approx(100.0)
    one_ref = bleu(["Vous êtes grand.", "Il est là."], [[r[0]] for r in refs]).score
    assert one_ref < 100.0
    assert chrf(["Vous êtes grand.", "Il est là."], refs).score == pytest.approx(100.0)
    assert exact_match_any(["Vous êtes  grand.", "Il est ici."], refs) == 0.5
    with pytest.raises(ValueError, match="hypotheses for"):
        bleu(["a"], refs)
    with pytest.raises(ValueError, match="non-empty list"):
        bleu(["a", "b"], ["Il est là.", "x"])


@pytest.mark.parametrize("family", ["transformer", "gru"])
def test_translate_greedy_and_beam(family):
    from transformer_lib.rnn_baseline import GRUConfig, GRUTranslator
    from transformer_lib.transformer import Transformer, TransformerConfig
    task = small_task()
    V = len(task.src_tokenizer)
    torch.manual_seed(0)
    if family == "transformer":
        model = Transformer(TransformerConfig(V, V, d_model=12, num_heads=3, num_layers=1, d_ff=20, dropout=0.0,
                                              max_len=40, share_embeddings=True))
    else:
        model = GRUTranslator(GRUConfig(V, V, d_model=12, d_embed=6, d_attention=5, dropout=0.0, share_embeddings=True))
    sources = ["You're tall.", "I'm cold.", "He's tall and tired."]
    greedy = translate(model, task, sources, max_len=7)
    beam = translate(model, task, sources, beam_size=3, max_len=7)
    assert len(greedy) == len(beam) == 3 and all(isinstance(t, str) for t in greedy + beam)
    one_by_one = [translate(model, task, [s], max_len=7)[0] for s in sources]
    assert greedy == one_by_one                                              # batching and sorting change nothing
    with pytest.raises(TypeError, match="single str"):
        translate(model, task, "I'm cold.")
    if family == "transformer":                                             # lesson 11's key/value cache
        from transformer_lib.kv_cache import new_cache
        assert translate(model, task, sources, max_len=7, new_cache=new_cache) == greedy
        assert translate(model, task, sources, beam_size=3, max_len=7, new_cache=new_cache) == beam
        with pytest.raises(ValueError, match="not both"):
            translate(model, task, sources, decode=lambda m, src, n: src, new_cache=new_cache)
        with pytest.raises(TypeError, match="new_cache must be a function"):
            translate(model, task, sources, new_cache=new_cache(model))


def test_translate_decodes_a_few_tokens_only_in_the_smoke_test(monkeypatch):
    from transformer_lib.translation import SMOKE_MAX_LEN
    task = small_task()
    seen = []

    def decode(model, src, max_len):
        seen.append(max_len)
        return src

    model = torch.nn.Linear(1, 1)
    translate(model, task, ["I'm cold."], max_len=20, decode=decode)
    monkeypatch.setenv("TRANSFORMER_COURSE_SMOKE", "1")
    translate(model, task, ["I'm cold."], max_len=20, decode=decode)
    translate(model, task, ["I'm cold."], max_len=2, decode=decode)
    assert seen == [20, SMOKE_MAX_LEN, 2]


# -- helpers of the lesson ----------------------------------------------------------------------

def test_unseen_words_and_repetition_loops():
    from transformer_lib.translation import repeats_ngram, unseen_words
    task = small_task()
    assert unseen_words(task, "He's tall, cold and HAPPY!") == ["and", "HAPPY"]
    assert repeats_ngram("je suis suis là", 1) and repeats_ngram("je suis je suis", 2)
    assert not repeats_ngram("je suis là", 1) and not repeats_ngram("", 1)


def test_bleu_tracker_reports_training_time_without_its_own():
    from transformer_lib.transformer import Transformer, TransformerConfig
    from transformer_lib.translation import BleuTracker
    task = small_task()
    V = len(task.src_tokenizer)
    model = Transformer(TransformerConfig(V, V, d_model=12, num_heads=3, num_layers=1, d_ff=20, dropout=0.0,
                                          max_len=40, share_embeddings=True))
    tracker = BleuTracker(task, "dev", max_len=5)
    first = tracker(model)
    second = tracker(model)
    assert set(first) == {"dev_bleu", "seconds", "cpu_seconds"} and 0 <= first["dev_bleu"] <= 100
    assert second["cpu_seconds"] >= first["cpu_seconds"] >= 0
    assert second["seconds"] >= first["seconds"] >= 0 and tracker.eval_seconds > 0
    assert second["seconds"] - first["seconds"] < tracker.eval_seconds       # the evaluations are not counted


@pytest.mark.parametrize("family", ["transformer", "gru"])
def test_step_seconds_leaves_the_model_unchanged(family):
    from transformer_lib.rnn_baseline import GRUConfig, GRUTranslator
    from transformer_lib.transformer import Transformer, TransformerConfig
    from transformer_lib.translation import step_seconds
    model = Transformer(TransformerConfig(13, 13, d_model=12, num_heads=3, num_layers=1, d_ff=20, max_len=40)) \
        if family == "transformer" else GRUTranslator(GRUConfig(13, 13, d_model=12, d_embed=6, d_attention=5))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seconds = step_seconds(model, length=7, batch_size=2, repeats=2)
    assert seconds > 0 and not model.training and torch.get_num_threads() >= 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_pictures_have_titles_and_labels_and_the_explorer_redraws():
    import matplotlib.pyplot as plt

    from transformer_lib.plotting import (plot_alignments, plot_bleu_against_time, plot_step_times, plot_translation,
                                          plot_translation_history, plot_vocabulary_tradeoff, translation_explorer)
    from transformer_lib.training import History

    history = History(step=list(range(1, 31)), loss=[3.0 - 0.05 * i for i in range(30)], lr=[1e-3] * 30,
                      evals=[{"step": 10, "dev_bleu": 5.0, "seconds": 1.0}, {"step": 30, "dev_bleu": 9.0, "seconds": 3.0}])
    figures = [plot_vocabulary_tradeoff([0, 10, 20], [50, 60, 70], [30.0, 20.0, 15.0], {"words": (80, 9.0)}, chosen=10),
               plot_translation_history(history),
               plot_bleu_against_time({"a": ([1, 2], [3, 4]), "b": ([1, 2], [2, 5])}),
               plot_step_times([8, 16], {"Transformer, 1 thread": [0.01, 0.02], "GRU, 1 thread": [0.01, 0.03]})]
    weights = torch.softmax(torch.randn(3, 5), dim=-1)
    figures.append(plot_alignments([(list("abcde"), ["x", "y", "<eos>"], weights)], titles=["x y"]))
    figures.append(plot_translation("abcde", list("abcde"), ["x", "y", "<eos>"], weights, "x y", "never seen: e"))
    assert "never seen: e" in figures[-1].axes[0].get_xlabel()
    for fig in figures:
        axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert axes and all(ax.get_title() or fig._suptitle for ax in axes)
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in axes)
    calls = []

    def read(sentence):
        calls.append(sentence)
        return list(sentence[:4]), ["x", "<eos>"], torch.full((2, 4), 0.25), "x", "never seen: z"
    ex = translation_explorer(read, ["abcd", "efgh"])
    first = ex.image.value
    assert first[:4] == b"\x89PNG" and calls == ["abcd"]
    ex.controls["sentence"].value = "wxyz"
    assert calls[-1] == "wxyz" and ex.image.value != first
    plt.close("all")
