"""A word-level tokenizer with a character fallback, trained locally on the corpus (reconstruction).

The paper uses CodeT5's byte-level BPE with the edit tokens added; we train our own vocabulary
offline (no sentencepiece dependency): the text is already split into tokens (code by Python's
`tokenize`, comments on whitespace), the `vocab_size` budget holds the reserved ids, then
every character seen (twice: word-initial `▁c` and continuation `c`), then the most frequent
whole tokens. A token outside the vocabulary is spelled with its characters, so encoding is
lossless for every character seen in training (others become `<unk>`)::

    ids 0..3   <pad> </s> <s> <unk>          (pad = decoder start, </s> = EOS, <s> = plan separator)
    ids 4..12  the nine edit tokens of `editplan.EDIT_TOKENS`
    ids 13..   num_sentinels sentinels <extra_id_i>, then characters, then whole tokens

Sentinels and edit tokens have their own ids and no corpus token can map to them (tested).
"""

from __future__ import annotations

import collections
import json
import pathlib
from collections.abc import Iterable, Sequence

from jaxlab.coditt5 import editplan
from jaxlab.core.errors import DataFormatError

__all__ = ["Tokenizer", "train_tokenizer", "PAD", "EOS", "SEP_ID", "UNK"]

PAD, EOS, SEP_ID, UNK = 0, 1, 2, 3
_SPECIAL = ("<pad>", "</s>", editplan.SEP, "<unk>")
_WORD_START = "\u2581"


class Tokenizer:
    """Maps token lists to ids and back (see module docstring)."""

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

    def __len__(self) -> int:
        return len(self.pieces)

    def sentinel(self, i: int) -> int:
        if not 0 <= i < self.num_sentinels:
            raise ValueError(f"sentinel {i} out of range [0, {self.num_sentinels})")
        return self.first_sentinel + i

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

    @property
    def specials(self) -> frozenset:
        """Every reserved piece string except pad/eos/unk: separator, edit tokens, sentinels."""
        return frozenset(self.pieces[SEP_ID:SEP_ID + 1] + self.pieces[UNK + 1:self.first_sentinel + self.num_sentinels])

    def decode(self, ids: Iterable[int], *, stop_at_eos: bool = True) -> list[str]:
        """Token strings of `ids` (pads skipped; stops at `</s>` unless told not to)."""
        out: list[str] = []
        continuing = False
        char_start = self.first_sentinel + self.num_sentinels
        for i in ids:
            i = int(i)
            if i == EOS and stop_at_eos:
                break
            if i == PAD:
                continue
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

    def save(self, path: str | pathlib.Path) -> None:
        from jaxlab.core import workdir

        workdir.write_json(path, {"pieces": self.pieces, "num_sentinels": self.num_sentinels,
                                  "num_char_pieces_end": self.num_char_pieces_end})

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
