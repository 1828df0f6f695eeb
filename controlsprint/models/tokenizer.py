"""CLIP's byte-level BPE tokenizer, read from a local `vocab.json` + `merges.txt` (transformers layout).

Text is cleaned (Unicode NFC, control characters dropped, whitespace collapsed, lower-cased), split
with CLIP's pattern, mapped byte-wise to printable characters, and merged pair by pair in the order
of `merges.txt`; the last character of every word carries the `</w>` end-of-word marker.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import regex

from controlsprint.errors import UserError

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_SPLIT = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


@functools.cache
def byte_to_unicode() -> dict[int, str]:
    """Each byte as a printable character: printable Latin-1 bytes as themselves, the rest from U+0100 on."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def clean_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if ch in "\t\n\r " or not unicodedata.category(ch).startswith("C"))
    return " ".join(text.split()).lower()


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> tuple[str, ...]:
    """Byte-pair encoding of one (byte-mapped) word: merge the best-ranked adjacent pair, everywhere it
    occurs, until no pair of the word has a rank."""
    symbols = [*word[:-1], word[-1] + "</w>"]
    while len(symbols) > 1:
        rank, pair = min((ranks.get(p, np.inf), p) for p in zip(symbols, symbols[1:], strict=False))
        if rank == np.inf:
            break
        merged, i = [], 0
        while i < len(symbols):
            if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == pair:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return tuple(symbols)


class CLIPTokenizer:
    def __init__(
        self, vocab: dict[str, int], merges: Sequence[tuple[str, str]], *, max_length: int = 77, pad_token=EOS
    ):
        missing = [t for t in (BOS, EOS, pad_token) if t not in vocab]
        if missing:
            raise UserError(f"tokenizer vocabulary lacks the special token(s) {', '.join(missing)}")
        self.vocab = vocab
        self.merges = list(merges)
        self.ranks = {pair: i for i, pair in enumerate(self.merges)}
        self.max_length = max_length
        self.pad_token = pad_token
        self.bos_id, self.eos_id, self.pad_id = vocab[BOS], vocab[EOS], vocab[pad_token]
        self._bpe = functools.lru_cache(maxsize=65536)(self._bpe_uncached)

    # -- loading and saving ---------------------------------------------------------------------------

    @classmethod
    def from_folder(cls, folder: str | Path) -> CLIPTokenizer:
        folder = Path(folder)
        vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
        for f in (vocab_file, merges_file):
            if not f.is_file():
                raise UserError(f"tokenizer folder {folder}: {f.name} is missing")
        try:
            vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise UserError(f"{vocab_file}: not valid JSON ({err.msg})") from None
        lines = merges_file.read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        if any(len(m) != 2 for m in merges):
            raise UserError(f"{merges_file}: every line must hold two symbols")
        settings = {}
        if (folder / "tokenizer_config.json").is_file():
            settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        max_length = int(settings.get("model_max_length", 77))
        max_length = 77 if max_length > 10**6 else max_length  # "unbounded" sentinel in some configs
        pad = settings.get("pad_token", EOS)
        pad = pad.get("content", EOS) if isinstance(pad, dict) else pad
        return cls(vocab, merges, max_length=max_length, pad_token=pad)

    def save(self, folder: str | Path) -> None:
        """Write the transformers layout (CLIPTokenizer.from_pretrained reads it)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8")
        merges = "\n".join(" ".join(m) for m in self.merges)
        (folder / "merges.txt").write_text(f"#version: 0.2\n{merges}\n", encoding="utf-8")
        config = {
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": self.max_length,
            "bos_token": BOS,
            "eos_token": EOS,
            "unk_token": EOS,
            "pad_token": self.pad_token,
        }
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        special = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")

    # -- tokenizing -----------------------------------------------------------------------------------

    def _bpe_uncached(self, word: str) -> tuple[str, ...]:
        return bpe(word, self.ranks)

    def tokenize(self, text: str) -> list[str]:
        table = byte_to_unicode()
        tokens = []
        for piece in _SPLIT.findall(clean_text(text)):
            if piece in (BOS, EOS):
                tokens.append(piece)
                continue
            tokens.extend(self._bpe("".join(table[b] for b in piece.encode("utf-8"))))
        return tokens

    def encode(self, text: str) -> list[int]:
        """Token ids without BOS/EOS or padding; symbols outside the vocabulary become EOS (CLIP's unk)."""
        return [self.vocab.get(t, self.eos_id) for t in self.tokenize(text)]

    def __call__(self, texts: str | Iterable[str]) -> np.ndarray:
        """[BOS, ids..., EOS, PAD...] truncated/padded to `max_length`, as an int32 array [B, max_length]."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = np.full((len(texts), self.max_length), self.pad_id, dtype=np.int32)
        for row, text in enumerate(texts):
            ids = [self.bos_id, *self.encode(text)[: self.max_length - 2], self.eos_id]
            out[row, : len(ids)] = ids
        return out
