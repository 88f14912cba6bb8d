"""An answer's body, read within a cap: on the wire and after each layer of its Content-Encoding.

A hostile or broken server can send a body that never ends, or a few kilobytes that
inflate to gigabytes (`Content-Encoding: gzip, gzip` multiplies the two ratios). httpx's
decoders inflate each chunk whole, so the client takes the raw bytes and decodes them
here, a bounded piece at a time: reading stops as soon as the decoded body, or what any
layer produces on the way, passes the cap. Memory stays within a small multiple of the
cap whatever the server sends, and so does the work: at most `MAX_LAYERS` layers, none
producing more than about the cap.

gzip (also several members in a row), deflate (zlib-wrapped as specified, or raw as some
servers send it) and identity are decoded; any other coding (br, zstd, compress) is
refused, since the client never asks for one.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, Iterator, Sequence
from dataclasses import dataclass

MAX_LAYERS = 4  # "gzip, gzip" is the most an honest server stacks; each layer costs work up to the cap
PIECE_BYTES = 64 * 1024  # the most one inflate step produces, so one chunk never balloons in memory


class BodyRefused(ValueError):
    """The body cannot be read: it is larger than allowed, or its Content-Encoding lies."""


class BodyTooLarge(BodyRefused):
    """The body passed its cap; the message says the cap and the setting that raises it."""


@dataclass(frozen=True, slots=True)
class BodyCap:
    """The most one answer may decode to, and the setting an operator raises it with."""

    max_bytes: int
    setting: str  # `FLOWSYNC_MAX_DETAILS_BYTES`

    @property
    def slack_bytes(self) -> int:
        # Compressed data of an answer within the cap is at most a little larger than the answer
        # (stored deflate blocks, headers), so the wire and inner layers get that much more.
        return self.max_bytes + self.max_bytes // 64 + 4096

    def exceeded(self, what: str = "decoded") -> BodyTooLarge:
        return BodyTooLarge(f"the answer exceeds {size_text(self.max_bytes)} {what} ({self.setting})")


def size_text(size: int) -> str:
    """A byte count as people read it: `8 MiB`, `1.5 KiB`, `300 bytes`."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


class _Inflate:
    """One gzip or deflate layer, inflating at most `PIECE_BYTES` at a time."""

    def __init__(self, coding: str) -> None:
        self._gzip = coding != "deflate"
        self._name = "gzip" if self._gzip else "deflate"
        self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16) if self._gzip else None
        self._head = b""  # deflate: the first bytes, until they tell zlib-wrapped from raw

    def feed(self, data: bytes) -> Iterator[bytes]:
        inflater = self._inflater
        if inflater is None:  # deflate, not yet told which kind
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            wbits = zlib.MAX_WBITS if _zlib_header(data) else -zlib.MAX_WBITS
            inflater = self._inflater = zlib.decompressobj(wbits)
        while True:
            try:
                piece = inflater.decompress(data, PIECE_BYTES)
            except zlib.error as exc:
                raise BodyRefused(f"body is not valid {self._name} data") from exc
            if piece:
                yield piece
            if inflater.eof:
                data = inflater.unused_data
                if not data:
                    return
                if not self._gzip:
                    raise BodyRefused("body goes on after the end of its deflate data")
                inflater = self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)  # the next member
                continue
            data = inflater.unconsumed_tail
            # A full piece may leave output held back even when all input was taken: ask again.
            if not data and len(piece) < PIECE_BYTES:
                return

    def finish(self) -> None:
        if self._inflater is None:
            if self._head:
                raise BodyRefused("body's deflate data ends early")
            return
        if not self._inflater.eof:
            raise BodyRefused(f"body's {self._name} data ends early")


def _zlib_header(data: bytes) -> bool:
    """Whether `data` starts as RFC 1950 says (deflate method, header check), not as raw deflate."""
    return data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


_DECODED = {"gzip", "x-gzip", "deflate"}
# Named in a refusal; any other value is not repeated, since a header may echo what the request sent.
_KNOWN = {"br", "zstd", "compress", "x-compress", "bzip2", "exi", "pack200-gzip", "aes128gcm", "dcb", "dcz"}


def layers_of(codings: Sequence[str]) -> list[str]:
    """The codings to undo, in the order to undo them (the last applied first); identity dropped."""
    layers = [coding.strip().lower() for coding in reversed(codings)]
    layers = [coding for coding in layers if coding and coding != "identity"]
    unknown = [coding for coding in layers if coding not in _DECODED]
    if unknown:
        name = repr(unknown[0]) if unknown[0] in _KNOWN else "an unknown coding"
        raise BodyRefused(f"body is encoded with {name}, which flowsync does not ask for")
    if len(layers) > MAX_LAYERS:
        raise BodyRefused(f"body is encoded {len(layers)} times over (at most {MAX_LAYERS} layers are read)")
    return layers


class BodyReader:
    """Reads one body within `cap`, undoing `codings` (Content-Encoding's values, as sent) on the way.

    `received` says how many bytes came off the wire so far, for a message when time runs out.
    """

    def __init__(self, codings: Sequence[str], cap: BodyCap) -> None:
        self._cap = cap
        self._layers = [_Inflate(coding) for coding in layers_of(codings)]
        self._produced = [0] * len(self._layers)  # by each layer, counted against the cap's slack
        self._pieces: list[bytes] = []
        self._size = 0
        self.received = 0

    def check_length(self, content_length: str | None) -> None:
        """Refuse at once a body whose announced length is already too large."""
        if content_length is None:
            return
        digits = content_length.strip()
        if not (digits.isascii() and digits.isdigit()):
            return  # the transport refuses a malformed length on its own
        limit = self._cap.slack_bytes if self._layers else self._cap.max_bytes
        if len(digits) > 18 or int(digits) > limit:
            raise self._cap.exceeded("on the wire" if self._layers else "decoded")

    async def read(self, chunks: AsyncIterable[bytes]) -> bytes:
        """Every chunk through the layers, then the decoded body; `BodyRefused` says why not."""
        async for chunk in chunks:
            self.feed(chunk)
        return self.finish()

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if not self._layers:
            self._keep(chunk)
            return
        if self.received > self._cap.slack_bytes:
            raise self._cap.exceeded("on the wire")
        self._through(0, chunk)

    def finish(self) -> bytes:
        for layer in self._layers:
            layer.finish()
        body = b"".join(self._pieces)
        self._pieces = []  # held once, not twice, while the caller parses it
        return body

    def _through(self, index: int, data: bytes) -> None:
        for piece in self._layers[index].feed(data):
            if index + 1 == len(self._layers):
                self._keep(piece)
                continue
            self._produced[index] += len(piece)
            if self._produced[index] > self._cap.slack_bytes:
                raise self._cap.exceeded()
            self._through(index + 1, piece)

    def _keep(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self._cap.max_bytes:
            raise self._cap.exceeded()
        self._pieces.append(piece)
