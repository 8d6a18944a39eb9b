"""The physical lines of a labelled text file, each decoded on its own so that one bad
line cannot spoil the file, and the refusal of files that are not text at all."""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Iterator, Tuple, Union

from .records import Rejected

Line = Tuple[int, str]
CHUNK = 1 << 20
# The first bytes looked at to tell binary files from text: UTF-16 text is half NUL
# bytes, while a stray NUL in a text file only spoils its row.
BINARY_SAMPLE = 8000
BINARY_NUL_SHARE = 0.1
BINARY_MIN_NULS = 16
DOCBIN_HINT = (
    "Read .spacy files with spaCy's own corpus reader: in the training config, "
    '[corpora.train] @readers = "spacy.Corpus.v1" with path = ${paths.train} (and the same for '
    "[corpora.dev]), or on the command line add "
    "--corpora.train '{\"@readers\": \"spacy.Corpus.v1\", \"path\": \"${paths.train}\"}' "
    "--corpora.dev '{\"@readers\": \"spacy.Corpus.v1\", \"path\": \"${paths.dev}\"}' "
    "(see docs/convert.md)."
)


def check_text_file(path: Path) -> None:
    """Raises a ValueError saying what to use for a .spacy DocBin, a compressed file or
    other binary data, which would otherwise be read as lines of garbage."""
    with path.open("rb") as f:
        head = f.read(BINARY_SAMPLE)
    if path.suffix.lower() == ".spacy" or _is_zlib(head):
        raise ValueError(f"{path} is a spaCy DocBin (.spacy), not a labelled text file. {DOCBIN_HINT}")
    if head.startswith(b"\x1f\x8b") or head.startswith(b"PK\x03\x04"):
        raise ValueError(f"{path} is a compressed file (gzip or zip): decompress it first.")
    if head.count(0) >= BINARY_MIN_NULS and head.count(0) / len(head) > BINARY_NUL_SHARE:
        raise ValueError(
            f"{path} is not a text file (it holds NUL bytes). Give a TSV, CSV, JSONL or prefixed "
            f"text file; for a UTF-16 or UTF-32 file, re-encode it to UTF-8 first "
            f"(`iconv -f utf-16 -t utf-8 IN > OUT`)."
        )


def _is_zlib(head: bytes) -> bool:
    """DocBin.to_disk writes a msgpack map compressed with zlib (a 2-byte header that is a
    multiple of 31)."""
    if len(head) < 2 or head[0] & 0x0F != 8 or (head[0] << 8 | head[1]) % 31:
        return False
    try:
        start = zlib.decompressobj().decompress(head, 1)
    except zlib.error:
        return False
    return bool(start) and (0x80 <= start[0] <= 0x8F or start[0] in (0xDE, 0xDF))


def uses_cr_line_ends(path: Path) -> bool:
    """True for a file with carriage returns and no line feed: classic Mac line endings."""
    seen_cr = False
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            if b"\n" in chunk:
                return False
            seen_cr = seen_cr or b"\r" in chunk
    return seen_cr


def raw_lines(path: Path) -> Iterator[bytes]:
    """Physical lines without their line ending: LF or CRLF, or CR in a file that has no LF.
    A CR inside an LF-terminated line stays part of it."""
    if uses_cr_line_ends(path):
        pieces = path.read_bytes().split(b"\r")
        yield from pieces[:-1] if pieces[-1] == b"" else pieces
        return
    with path.open("rb") as f:
        for raw in f:
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            yield raw[:-1] if raw.endswith(b"\r") else raw


def count_lines(path: Path) -> int:
    return sum(1 for _ in raw_lines(path))


def decoded_lines(path: Path, encoding: str) -> Iterator[Union[Line, Rejected]]:
    """(line number, text) for each physical line, or a `Rejected` for one that does not decode."""
    for line_no, raw in enumerate(raw_lines(path), start=1):
        try:
            text = raw.decode(encoding)
        except ValueError as e:  # UnicodeDecodeError, or UnicodeError from codecs such as idna
            yield Rejected(line_no, decode_reason(e, raw, encoding), shown_raw(raw, encoding))
            continue
        yield line_no, text.lstrip("\ufeff") if line_no == 1 else text


def shown_raw(raw: bytes, encoding: str) -> str:
    """A line that does not decode, with the bytes that fail written as \\xNN."""
    try:
        return raw.decode(encoding, errors="backslashreplace")
    except (ValueError, TypeError):
        return raw.decode("ascii", errors="backslashreplace")


def decode_reason(error: ValueError, raw: bytes, encoding: str) -> str:
    where = ""
    if isinstance(error, UnicodeDecodeError):
        where = f" (byte 0x{raw[error.start]:02x} at byte {error.start + 1})"
    return (
        f"cannot decode as {encoding}{where}; "
        f"if the file is not {encoding}, give its encoding (e.g. --encoding latin-1)"
    )
