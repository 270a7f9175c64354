"""Tokenizers trained locally on the corpus (reconstruction): word-level with a character fallback
(`Tokenizer`, the default) or SentencePiece subwords (`SentencePieceTokenizer`).

The paper uses CodeT5's byte-level BPE with the edit tokens added; we train our own vocabulary
offline. Both tokenizers map *token lists* (code split by Python's `tokenize`, comments on
whitespace) to ids and back, share the reserved ids below, and keep corpus text away from them.

Word-level: the `vocab_size` budget holds the reserved ids, then every character seen (twice:
word-initial `▁c` and continuation `c`), then the most frequent whole tokens. A token outside the
vocabulary is spelled with its characters, so encoding is lossless for every character seen in
training (others become `<unk>`)::

    ids 0..3   <pad> </s> <s> <unk>          (pad = decoder start, </s> = EOS, <s> = plan separator)
    ids 4..12  the nine edit tokens of `editplan.EDIT_TOKENS`
    ids 13..   num_sentinels sentinels <extra_id_i>, then characters, then whole tokens

Sentinels and edit tokens have their own ids and no corpus token can map to them (tested).

SentencePiece (`train_sentencepiece`): the same ids 0..12 + sentinels as control symbols, then 256
byte pieces, then BPE pieces learned with `sentencepiece` in memory (see `SentencePieceTokenizer`).
`load_tokenizer` reads either kind from its JSON file.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import io
import json
import os
import pathlib
from collections.abc import Iterable, Sequence

from jaxlab.coditt5 import editplan
from jaxlab.core.errors import DataFormatError

__all__ = ["Tokenizer", "SentencePieceTokenizer", "train_tokenizer", "train_sentencepiece", "load_tokenizer",
           "PAD", "EOS", "SEP_ID", "UNK"]

PAD, EOS, SEP_ID, UNK = 0, 1, 2, 3
_SPECIAL = ("<pad>", "</s>", editplan.SEP, "<unk>")
_WORD_START = "\u2581"


def _content_ids(ids: Iterable[int], stop_at_eos: bool):
    """The ids to decode: pads skipped, up to the first `</s>` when `stop_at_eos`."""
    for i in ids:
        i = int(i)
        if i == EOS and stop_at_eos:
            return
        if i != PAD:
            yield i


class _ReservedIds:
    """What both tokenizers share: `pieces` (by id), the reserved ids 0 .. first_sentinel +
    num_sentinels - 1 (pad, eos, separator, unk, edit tokens, sentinels)."""

    pieces: list[str]
    first_sentinel: int
    num_sentinels: int

    def __len__(self) -> int:
        return len(self.pieces)

    def sentinel(self, i: int) -> int:
        if not 0 <= i < self.num_sentinels:
            raise ValueError(f"sentinel {i} out of range [0, {self.num_sentinels})")
        return self.first_sentinel + i

    @property
    def specials(self) -> frozenset:
        """Every reserved piece string except pad/eos/unk: separator, edit tokens, sentinels."""
        return frozenset(self.pieces[SEP_ID:SEP_ID + 1] + self.pieces[UNK + 1:self.first_sentinel + self.num_sentinels])


class Tokenizer(_ReservedIds):
    """Maps token lists to ids and back (see module docstring)."""

    kind = "word"

    def __init__(self, pieces: Sequence[str], num_sentinels: int, num_char_pieces_end: int):
        self.pieces = list(pieces)
        self.num_char_pieces_end = num_char_pieces_end
        self.num_sentinels = num_sentinels
        self.index = {p: i for i, p in enumerate(self.pieces)}
        if len(self.index) != len(self.pieces):
            raise ValueError("tokenizer pieces are not unique")
        self.first_sentinel = len(_SPECIAL) + len(editplan.EDIT_TOKENS)
        self.reserved = set(range(self.first_sentinel + num_sentinels))
        self.edit_ids = {self.index[t] for t in editplan.EDIT_TOKENS}

    def encode_token(self, token: str, allow: frozenset | set = frozenset()) -> list[int]:
        """Ids of one token: its own id, else its spelling (`▁c` then continuation chars).

        A token spelled like a reserved piece (`<s>`, `<INSERT>`, `<extra_id_0>`) gets the reserved
        id only if it is in `allow`; otherwise it is text and is spelled, so corpus text can never
        produce a separator, edit or sentinel id.
        """
        i = self.index.get(token)
        char_piece = i is not None and self.first_sentinel + self.num_sentinels <= i < self.num_char_pieces_end
        if i is not None and not char_piece and (i not in self.reserved or token in allow):
            return [i]
        out = [self.index.get(_WORD_START + token[0], UNK)] if token else []
        out += [self.index.get(c, UNK) for c in token[1:]]
        return out

    def encode(self, tokens: Iterable[str], allow: frozenset | set = frozenset()) -> list[int]:
        """Ids of a token list; reserved pieces only for the tokens in `allow` (see `encode_token`)."""
        out: list[int] = []
        for t in tokens:
            out += self.encode_token(t, allow)
        return out

    def decode(self, ids: Iterable[int], *, stop_at_eos: bool = True) -> list[str]:
        """Token strings of `ids` (pads skipped; stops at `</s>` unless told not to)."""
        out: list[str] = []
        continuing = False
        char_start = self.first_sentinel + self.num_sentinels
        for i in _content_ids(ids, stop_at_eos):
            if char_start <= i < self.num_char_pieces_end:
                if (i - char_start) % 2 == 0:  # word-initial character
                    out.append(self.pieces[i][1:])
                    continuing = True
                elif continuing:
                    out[-1] += self.pieces[i]
                else:
                    out.append(self.pieces[i])
                    continuing = True
                continue
            out.append(self.pieces[i] if 0 <= i < len(self.pieces) else "<unk>")
            continuing = False
        return out

    def state(self) -> dict:
        """The JSON-able content that `save` writes."""
        return {"pieces": self.pieces, "num_sentinels": self.num_sentinels,
                "num_char_pieces_end": self.num_char_pieces_end}

    def digest(self) -> str:
        """A hash of the vocabulary: equal digests encode every token list alike."""
        return _digest(self.kind, self.state())

    def save(self, path: str | pathlib.Path) -> None:
        from jaxlab.core import workdir

        workdir.write_json(path, self.state())

    @classmethod
    def load(cls, path: str | pathlib.Path) -> Tokenizer:
        path = pathlib.Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            tok = cls(d["pieces"], int(d["num_sentinels"]), int(d["num_char_pieces_end"]))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise DataFormatError(f"{path}: not a coditt5 tokenizer file ({e})") from None
        return tok


def train_tokenizer(sequences: Iterable[Sequence[str]], vocab_size: int, *, num_sentinels: int = 32,
                    ) -> Tokenizer:
    """Builds the vocabulary from token sequences: reserved ids, all characters seen, then the most
    frequent tokens (ties broken alphabetically, so the result is deterministic)."""
    counts: collections.Counter = collections.Counter()
    chars: set = set()
    for seq in sequences:
        for t in seq:
            counts[t] += 1
            chars.update(t)
    reserved = list(_SPECIAL) + list(editplan.EDIT_TOKENS) + [f"<extra_id_{i}>" for i in range(num_sentinels)]
    char_pieces = []
    for c in sorted(chars):
        char_pieces += [_WORD_START + c, c]
    pieces = reserved + char_pieces
    if len(pieces) > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is below the {len(pieces)} reserved and character pieces")
    n_char_end = len(pieces)
    taken = set(pieces)
    for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(pieces) >= vocab_size:
            break
        if t not in taken and len(t) > 1 and not t.startswith(_WORD_START):
            pieces.append(t)
            taken.add(t)
    return Tokenizer(pieces, num_sentinels, n_char_end)


# ---- SentencePiece ------------------------------------------------------------------------------

#: escapes applied to each token before SentencePiece sees it (see `SentencePieceTokenizer`)
_ESC = "\ue000"
_ESC_TABLE = str.maketrans({" ": _ESC + "0", _WORD_START: _ESC + "1", _ESC: _ESC + "2"})
_UNESC = {"0": " ", "1": _WORD_START, "2": _ESC}


def _escape(token: str) -> str:
    return token.translate(_ESC_TABLE)


def _unescape(text: str) -> str:
    if _ESC not in text:
        return text
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == _ESC and i + 1 < len(text) and text[i + 1] in _UNESC:
            out.append(_UNESC[text[i + 1]])
            i += 2
        else:  # a lone escape character (only in model output) is kept as it is
            out.append(c)
            i += 1
    return "".join(out)


def _digest(kind: str, state: dict) -> str:
    return hashlib.sha256(json.dumps([kind, state], sort_keys=True).encode()).hexdigest()[:16]


def _reserved_pieces(num_sentinels: int) -> list[str]:
    return list(_SPECIAL) + list(editplan.EDIT_TOKENS) + [f"<extra_id_{i}>" for i in range(num_sentinels)]


class SentencePieceTokenizer(_ReservedIds):
    """SentencePiece subwords over token lists, with the reserved ids of `Tokenizer` (reconstruction).

    Layout of the ids::

        0..3       <pad> </s> <s> <unk>      (SentencePiece's pad, eos, bos and unk pieces)
        4..12      the nine edit tokens       (control symbols)
        13..       num_sentinels sentinels    (control symbols), then 256 byte pieces <0x00>..<0xFF>,
                                              then the learned pieces ('▁' marks a token's start)

    Token boundaries: each token is one SentencePiece "word". Spaces and '▁' inside a token (string
    literals) are escaped first (' ' -> U+E000 '0', '▁' -> U+E000 '1', U+E000 -> U+E000 '2'), so every
    token's pieces begin with exactly one '▁'-initial piece; `decode` starts a new token at each
    '▁'-initial piece and undoes the escapes. An empty token is the lone '▁' piece.

    Specials are SentencePiece *control* symbols rather than user-defined ones: SentencePiece matches
    user-defined symbols inside raw text, so a corpus string `<INSERT>` would become the edit id;
    control symbols are never produced from text and get their id only through `allow` (as in
    `Tokenizer.encode_token`). Normalization is the identity (no NFKC, no whitespace folding) and
    characters the trainer never saw are spelled as their UTF-8 bytes (byte fallback), so
    `decode(encode(tokens)) == tokens` for every list of non-empty or empty strings; `<unk>` is never
    produced by `encode`.
    """

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, num_sentinels: int):
        import sentencepiece as spm

        self.model_proto = bytes(model_proto)
        self.num_sentinels = num_sentinels
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.pieces = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        want = _reserved_pieces(num_sentinels)
        if self.pieces[:len(want)] != want:
            raise ValueError("not a coditt5 SentencePiece model: ids 0.. are not "
                             f"{want[:6]}... (got {self.pieces[:6]}...)")
        self.first_sentinel = len(_SPECIAL) + len(editplan.EDIT_TOKENS)
        self.num_reserved = self.first_sentinel + num_sentinels
        self.reserved = set(range(self.num_reserved))
        self.index = {p: i for i, p in enumerate(want)}
        self.edit_ids = {self.index[t] for t in editplan.EDIT_TOKENS}
        self.space_id = self.sp.piece_to_id(_WORD_START)
        if self.pieces[self.space_id] != _WORD_START:
            raise ValueError("SentencePiece model has no '\u2581' piece")
        self._starts = [p.startswith(_WORD_START) and i >= self.num_reserved and not self.sp.is_byte(i)
                        for i, p in enumerate(self.pieces)]

    def _encode_run(self, run: list[str]) -> list[int]:
        text = " ".join(_escape(t) for t in run)
        return self.sp.encode(text) if text else [self.space_id]

    def encode_token(self, token: str, allow: frozenset | set = frozenset()) -> list[int]:
        """Ids of one token: its reserved id if it is in `allow`, else its SentencePiece pieces."""
        return self.encode([token], allow)

    def encode(self, tokens: Iterable[str], allow: frozenset | set = frozenset()) -> list[int]:
        """Ids of a token list; reserved pieces only for the tokens in `allow`. Runs of plain tokens
        are encoded in one SentencePiece call (pieces never cross a '▁', so this equals encoding
        them one by one)."""
        out: list[int] = []
        run: list[str] = []
        for t in tokens:
            i = self.index.get(t) if t in allow else None
            if i is None:
                run.append(t)
                continue
            if run:
                out += self._encode_run(run)
                run = []
            out.append(i)
        if run:
            out += self._encode_run(run)
        return out

    def decode(self, ids: Iterable[int], *, stop_at_eos: bool = True) -> list[str]:
        """Token strings of `ids` (pads skipped; stops at `</s>` unless told not to); a reserved id
        is a token of its own, and a piece that does not start with '▁' continues the current token
        (or starts one when there is none, as model output may)."""
        out: list[str] = []
        group: list[int] = []

        def flush():
            if group:
                out.append(_unescape(self.sp.decode(group)))
                group.clear()

        n = len(self.pieces)
        for i in _content_ids(ids, stop_at_eos):
            if i < self.num_reserved or i >= n:
                flush()
                out.append(self.pieces[i] if 0 <= i < n else "<unk>")
                continue
            if self._starts[i]:
                flush()
            group.append(i)
        flush()
        return out

    def state(self) -> dict:
        """The JSON-able content that `save` writes (the serialized model as base64)."""
        return {"kind": self.kind, "num_sentinels": self.num_sentinels,
                "model": base64.b64encode(self.model_proto).decode("ascii")}

    def digest(self) -> str:
        """A hash of the vocabulary (pieces, scores, types): equal digests encode every token list alike.
        (The serialized model also records the trainer's thread count, which changes nothing.)"""
        sp = self.sp
        pieces = [(p, sp.get_score(i), sp.is_control(i), sp.is_byte(i), sp.is_unknown(i))
                  for i, p in enumerate(self.pieces)]
        return _digest(self.kind, {"num_sentinels": self.num_sentinels, "pieces": pieces})

    def save(self, path: str | pathlib.Path) -> None:
        from jaxlab.core import workdir

        workdir.write_json(path, self.state())

    @classmethod
    def load(cls, path: str | pathlib.Path) -> SentencePieceTokenizer:
        tok = load_tokenizer(path)
        if not isinstance(tok, cls):
            raise DataFormatError(f"{path}: a {tok.kind} tokenizer, not a SentencePiece one")
        return tok


def train_sentencepiece(sequences: Iterable[Sequence[str]], vocab_size: int, *, num_sentinels: int = 32,
                        model_type: str = "bpe", num_threads: int | None = None) -> SentencePieceTokenizer:
    """Trains a SentencePiece model in memory on token sequences (one sentence per sequence, its
    escaped tokens joined by spaces; see `SentencePieceTokenizer`).

    `vocab_size` is an upper bound (`hard_vocab_limit=False`): a small corpus yields fewer pieces.
    BPE by default, as CodeT5's tokenizer is a BPE; every character seen gets a piece
    (`character_coverage=1`).
    """
    import sentencepiece as spm

    sentences = [" ".join(_escape(t) for t in seq) for seq in sequences if len(seq)]
    if not any(sentence.strip("\r\n") for sentence in sentences):  # SentencePiece drops such lines
        raise ValueError("sentencepiece training needs text: every sequence of the corpus is empty or only "
                         "line breaks")
    writer = io.BytesIO()
    reserved = _reserved_pieces(num_sentinels)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=writer, vocab_size=vocab_size, model_type=model_type,
            pad_id=PAD, eos_id=EOS, bos_id=SEP_ID, unk_id=UNK, pad_piece=reserved[PAD], eos_piece=reserved[EOS],
            bos_piece=reserved[SEP_ID], unk_piece=reserved[UNK], control_symbols=reserved[len(_SPECIAL):],
            byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
            add_dummy_prefix=True, remove_extra_whitespaces=False, split_by_whitespace=True,
            hard_vocab_limit=False, max_sentence_length=1 << 20,
            num_threads=num_threads or min(os.cpu_count() or 1, 16), minloglevel=2)
    except RuntimeError as e:
        raise ValueError(f"sentencepiece training failed with vocab_size={vocab_size} "
                         f"({len(reserved)} reserved + 256 byte pieces + the characters seen): {e}") from None
    return SentencePieceTokenizer(writer.getvalue(), num_sentinels)


def load_tokenizer(path: str | pathlib.Path) -> Tokenizer | SentencePieceTokenizer:
    """Reads a tokenizer saved by either class's `save` (the file says which)."""
    path = pathlib.Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(d, dict) and d.get("kind") == SentencePieceTokenizer.kind:
            return SentencePieceTokenizer(base64.b64decode(d["model"], validate=True), int(d["num_sentinels"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataFormatError(f"{path}: not a coditt5 tokenizer file ({e})") from None
    return Tokenizer.load(path)
