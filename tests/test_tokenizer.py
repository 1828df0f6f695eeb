"""Our CLIP BPE tokenizer gives the ids transformers' CLIPTokenizer gives, from the same files."""

from __future__ import annotations

import pytest

from controlsprint.errors import UserError
from controlsprint.models.tokenizer import BOS, EOS, CLIPTokenizer, byte_to_unicode

MERGES = [
    ("r", "e"),
    ("re", "d</w>"),
    ("c", "i"),
    ("ci", "r"),
    ("cir", "c"),
    ("circ", "l"),
    ("circl", "e</w>"),
]
MERGES += [("t", "h"), ("th", "e</w>"), ("b", "l"), ("bl", "u"), ("blu", "e</w>"), ("o", "n</w>"), ("a", "b")]


def tiny_tokenizer(max_length: int = 16) -> CLIPTokenizer:
    chars = list(byte_to_unicode().values())
    vocab: dict[str, int] = {}
    for symbol in chars + [c + "</w>" for c in chars] + [a + b for a, b in MERGES] + [BOS, EOS]:
        vocab.setdefault(symbol, len(vocab))
    return CLIPTokenizer(vocab, MERGES, max_length=max_length)


SENTENCES = [
    "A red circle above the BLUE square.",
    "  it's 42   degrees!! on\tthe  bluered",
    "café ☕ naïve — “quotes”",
    "a" * 40,
    "",
    "red red red circle circle",
]


@pytest.mark.parametrize("text", SENTENCES)
def test_ids_equal_transformers(tmp_path, text):
    transformers = pytest.importorskip("transformers")
    ours = tiny_tokenizer()
    ours.save(tmp_path)
    theirs = transformers.CLIPTokenizer.from_pretrained(tmp_path)
    expected = theirs(text, padding="max_length", max_length=16, truncation=True).input_ids
    assert ours([text])[0].tolist() == expected


def test_merges_apply_and_layout_round_trips(tmp_path):
    tok = tiny_tokenizer()
    assert tok.tokenize("Red circle") == ["red</w>", "circle</w>"]
    ids = tok(["red", "the blue"])
    assert ids.shape == (2, 16) and ids[0, 0] == tok.bos_id and ids[0, 2] == tok.eos_id
    tok.save(tmp_path)
    again = CLIPTokenizer.from_folder(tmp_path)
    assert (again(SENTENCES) == tok(SENTENCES)).all()


def test_bad_tokenizer_folders(tmp_path):
    with pytest.raises(UserError, match="vocab.json is missing"):
        CLIPTokenizer.from_folder(tmp_path)
    tiny_tokenizer().save(tmp_path)
    (tmp_path / "vocab.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        CLIPTokenizer.from_folder(tmp_path)
    with pytest.raises(UserError, match="lacks the special token"):
        CLIPTokenizer({"a": 0}, [])


def test_word_tokenizer_makes_each_corpus_word_one_token(tmp_path):
    from controlsprint.models.vocab import build_word_tokenizer

    # 'green' first: a fixed merge chain per word had `g r` outrank `backg r`, splitting 'background'
    corpus = ["a green circle", "an orange triangle on a gray and green gradient background", "a star above"]
    tok = build_word_tokenizer(corpus, max_length=16)
    words = " ".join(corpus).split()
    assert tok.tokenize(" ".join(corpus)) == [w + "</w>" for w in words]
    assert tok.tokenize("greenery") != ["greenery</w>"]  # unseen words still tokenize, in pieces
    tok.save(tmp_path)
    assert (CLIPTokenizer.from_folder(tmp_path)(corpus) == tok(corpus)).all()
    transformers = pytest.importorskip("transformers")
    theirs = transformers.CLIPTokenizer.from_pretrained(tmp_path)
    for text in corpus:
        assert tok([text])[0].tolist() == theirs(text, padding="max_length", max_length=16).input_ids


def test_every_synthetic_caption_fits_the_embedded_text_encoder():
    """One token per word and per punctuation mark, and the longest caption within the positions it has."""
    import re

    from controlsprint.data.synth import render_scene, row_seed
    from controlsprint.models.configs import EMBEDDED_TEXT
    from controlsprint.models.vocab import build_word_tokenizer

    captions = [
        render_scene(kind, row_seed(0, i), 64).caption for kind in ("shapes", "hands") for i in range(600)
    ]
    tok = build_word_tokenizer(captions, max_length=EMBEDDED_TEXT.max_position_embeddings)
    lengths = [len(tok.encode(c)) for c in captions]
    assert lengths == [len(re.findall(r"[a-z]+|[^\sa-z]", c)) for c in captions]
    assert max(lengths) + 2 <= EMBEDDED_TEXT.max_position_embeddings
    assert max(lengths) + 2 > 32  # the three-shape gradient captions the former 32 positions cut off
