"""Build a small CLIP tokenizer whose vocabulary covers a corpus (the embedded model's captions).

The vocabulary holds the 512 byte-level base symbols (so any text still tokenizes), the merges that
make every corpus word a single token, and the two special tokens; anything else falls back to sub-word
pieces. One token per word matters to the model: a colour split into pieces ('or an g e</w>') must be
put back together by a two-layer text encoder, and split words push long captions past the text
encoder's positions (32 when this was found), cutting off their last shapes and backgrounds.

Each word's merges are found by running BPE with the merges so far and appending a merge of the first
two pieces it leaves, until it leaves one. A merge appended last has the lowest rank, so it never fires
while a higher one can: the words already made single tokens keep their encoding. (One fixed merge chain
per word, `r e` -> `re` -> `red</w>`, does not: another word's earlier merge `g r` splits `background`
into `back gr o u n d</w>`.)
"""

from __future__ import annotations

from collections.abc import Iterable

from controlsprint.models.tokenizer import _SPLIT, BOS, EOS, CLIPTokenizer, bpe, byte_to_unicode, clean_text


def corpus_words(texts: Iterable[str]) -> list[str]:
    """The distinct words of `texts` (as the tokenizer splits them), in first-seen order."""
    table = byte_to_unicode()
    seen: dict[str, None] = {}
    for text in texts:
        for piece in _SPLIT.findall(clean_text(text)):
            if piece not in (BOS, EOS):
                seen.setdefault("".join(table[b] for b in piece.encode("utf-8")), None)
    return list(seen)


def build_word_tokenizer(texts: Iterable[str], *, max_length: int = 77) -> CLIPTokenizer:
    symbols = list(byte_to_unicode().values())
    vocab: dict[str, int] = {}
    for symbol in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(symbol, len(vocab))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in corpus_words(texts):
        pieces = bpe(word, ranks)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            pieces = bpe(word, ranks)
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return CLIPTokenizer(vocab, merges, max_length=max_length)
