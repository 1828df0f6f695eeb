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
