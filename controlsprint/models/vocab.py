"""Build a small CLIP tokenizer whose vocabulary covers a corpus (the embedded model's captions).

The vocabulary holds the 512 byte-level base symbols (so any text still tokenizes), one merge chain
per corpus word (`r e` -> `re`, `re d</w>` -> `red</w>`), and the two special tokens. A word of the
corpus usually becomes a single token; anything else falls back to sub-word pieces.
"""

from __future__ import annotations

from collections.abc import Iterable

from controlsprint.models.tokenizer import _SPLIT, BOS, EOS, CLIPTokenizer, byte_to_unicode, clean_text


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
    known = set()
    for word in corpus_words(texts):
        pieces = [*word[:-1], word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            pair = (current, piece)
            if pair not in known:
                known.add(pair)
                merges.append(pair)
                vocab.setdefault(current + piece, len(vocab))
            current += piece
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return CLIPTokenizer(vocab, merges, max_length=max_length)
