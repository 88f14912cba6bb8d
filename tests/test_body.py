"""Reading one answer's body within a cap (`sync/vendor/body.py`): what is decoded, what is refused.

The reader takes raw chunks as they come off the wire and undoes each Content-Encoding layer a
bounded piece at a time, so these tests feed it bytes directly: every split of the input must
give the same body, and no input, however it inflates, may make it hold more than the cap.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.simulator.server import bomb
from sync.vendor.body import MAX_LAYERS, BodyCap, BodyReader, BodyRefused, BodyTooLarge, layers_of, size_text
from sync.vendor.payload import (
    DETAILS_CAP_BYTES,
    MAX_CHANNEL_CHARS,
    MAX_NAME_CHARS,
    MAX_NODES,
    parse_envelope,
    parse_flow,
)

CAP = BodyCap(2**20, "FLOWSYNC_MAX_DETAILS_BYTES")
BODY = json.dumps({"status": "0", "data": {"flowId": 1, "name": "x", "flow": []}, "pad": "y" * 5000}).encode()


def deflate_raw(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def read(codings: Iterable[str], chunks: Iterable[bytes], cap: BodyCap = CAP) -> bytes:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return asyncio.run(BodyReader(list(codings), cap).read(source()))


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


@pytest.mark.parametrize(
    ("codings", "encoded"),
    [
        pytest.param([], BODY, id="identity"),
        pytest.param(["identity"], BODY, id="identity named"),
        pytest.param(["gzip"], gzip.compress(BODY), id="gzip"),
        pytest.param(["x-gzip"], gzip.compress(BODY), id="x-gzip"),
        pytest.param([" GZip "], gzip.compress(BODY), id="gzip, any case and spaces"),
        pytest.param(["deflate"], zlib.compress(BODY), id="deflate, zlib-wrapped"),
        pytest.param(["deflate"], deflate_raw(BODY), id="deflate, raw"),
        pytest.param(["gzip", "gzip"], gzip.compress(gzip.compress(BODY)), id="gzip, gzip"),
        pytest.param(["deflate", "gzip"], gzip.compress(zlib.compress(BODY)), id="deflate, then gzip"),
        pytest.param(["gzip", "", "identity"], gzip.compress(BODY), id="empty and identity values"),
        pytest.param(["gzip"], gzip.compress(BODY[:100]) + gzip.compress(BODY[100:]), id="two gzip members"),
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 7, 4096, 10**9])
def test_each_coding_is_undone_whatever_the_chunks(
    codings: list[str], encoded: bytes, chunk_size: int
) -> None:
    """gzip, deflate of either kind and identity, alone or stacked, decode to the body sent."""
    assert read(codings, split(encoded, chunk_size)) == BODY


@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8))
@settings(max_examples=200, deadline=None)
def test_any_body_survives_stacked_gzip_split_anywhere(data: bytes, cuts: list[int]) -> None:
    """Wherever the wire splits two layers of gzip, the reader gives back exactly what was packed."""
    encoded = gzip.compress(gzip.compress(data))
    bounds = [0, *sorted(min(cut, len(encoded)) for cut in cuts), len(encoded)]
    chunks = [encoded[start:end] for start, end in itertools.pairwise(bounds)]
    assert read(["gzip", "gzip"], chunks) == data


def test_a_piece_held_back_by_zlib_is_still_read() -> None:
    """Input inflating to an exact multiple of the piece size loses nothing at the piece boundaries."""
    body = b"a" * (4 * 65536)
    assert read(["gzip"], [gzip.compress(body)]) == body
    assert read(["deflate"], split(zlib.compress(body), 3)) == body


@pytest.mark.parametrize(
    ("codings", "chunks", "problem"),
    [
        pytest.param(["br"], [b"x"], "^body is encoded with 'br', which flowsync does not ask for$", id="br"),
        pytest.param(["zstd"], [b"x"], "encoded with 'zstd'", id="zstd"),
        pytest.param(["0123456789abcdef"], [b"x"], "^body is encoded with an unknown coding,", id="unknown"),
        pytest.param(["gzip"] * (MAX_LAYERS + 1), [b"x"], f"at most {MAX_LAYERS}", id="too many layers"),
        pytest.param(["gzip"], [b'{"status": "0"}'], "^body is not valid gzip data$", id="not gzip"),
        pytest.param(["deflate"], [b"\xff\xff\xff\xff"], "not valid deflate data", id="not deflate"),
        pytest.param(
            ["gzip"], [gzip.compress(BODY)[:-5]], "^body's gzip data ends early$", id="gzip cut short"
        ),
        pytest.param(["gzip"], [b""], "gzip data ends early", id="gzip, empty"),
        pytest.param(["deflate"], [b"x"], "deflate data ends early", id="deflate, one byte"),
        pytest.param(["gzip"], [gzip.compress(BODY) + b"junk"], "not valid gzip data", id="junk after gzip"),
        pytest.param(
            ["deflate"],
            [zlib.compress(BODY) + b"junk"],
            "^body goes on after the end of its deflate data$",
            id="junk after deflate",
        ),
    ],
)
def test_a_body_that_lies_about_its_coding_is_refused(
    codings: list[str], chunks: list[bytes], problem: str
) -> None:
    """Unknown, excessive or broken codings are refused with a reason, never passed on undecoded."""
    with pytest.raises(BodyRefused, match=problem) as caught:
        read(codings, chunks)
    assert not isinstance(caught.value, BodyTooLarge)


@pytest.mark.parametrize("codings", [[], ["gzip"], ["gzip", "gzip"], ["deflate"]])
def test_the_cap_is_exact_on_the_decoded_body(codings: list[str]) -> None:
    """A body of exactly the cap is read; one byte more is refused, with the cap and its setting named."""
    cap = BodyCap(70_000, "FLOWSYNC_MAX_DETAILS_BYTES")

    def encode(data: bytes) -> bytes:
        for coding in codings:
            data = gzip.compress(data) if coding == "gzip" else zlib.compress(data)
        return data

    exact = bytes(range(256)) * (cap.max_bytes // 256) + b"x" * (cap.max_bytes % 256)
    assert read(codings, split(encode(exact), 1000), cap) == exact
    with pytest.raises(BodyTooLarge) as caught:
        read(codings, split(encode(exact + b"!"), 1000), cap)
    assert str(caught.value) == "the answer exceeds 68.4 KiB decoded (FLOWSYNC_MAX_DETAILS_BYTES)"


@pytest.mark.parametrize(
    ("codings", "length", "refused"),
    [
        pytest.param([], str(CAP.max_bytes), False, id="identity at the cap"),
        pytest.param([], str(CAP.max_bytes + 1), True, id="identity past the cap"),
        pytest.param([], "9" * 5000, True, id="more digits than int() takes"),
        pytest.param(["gzip"], str(CAP.max_bytes + 1), False, id="gzip may be a little larger"),
        pytest.param(["gzip"], str(CAP.slack_bytes + 1), True, id="gzip past the slack"),
        pytest.param([], "²", False, id="not ASCII digits: the transport's business"),
        pytest.param([], "-1", False, id="negative: the transport's business"),
    ],
)
def test_an_announced_length_past_the_cap_is_refused_before_reading(
    codings: list[str], length: str, refused: bool
) -> None:
    """Content-Length alone refuses a body too large to be within the cap; odd values are left alone."""
    reader = BodyReader(codings, CAP)
    if refused:
        with pytest.raises(BodyTooLarge, match=r"^the answer exceeds 1 MiB (decoded|on the wire)"):
            reader.check_length(length)
    else:
        reader.check_length(length)


def test_compressed_bytes_past_the_cap_on_the_wire_are_refused() -> None:
    """Wire bytes count too: gzip of empty stored blocks, inflating to nothing, stops at the cap's slack."""
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    chunks = [header] + [b"\x00\x00\x00\xff\xff" * 13107] * (CAP.slack_bytes // 65535 + 2)
    reader = BodyReader(["gzip"], CAP)
    with pytest.raises(BodyTooLarge, match="exceeds 1 MiB on the wire"):
        asyncio.run(reader.read(_aiter(chunks)))
    assert CAP.slack_bytes < reader.received <= CAP.slack_bytes + 65535


async def _aiter(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def test_an_inner_layer_that_inflates_past_the_cap_is_refused() -> None:
    """A layer producing more than the cap's slack is refused, even when the next one shrinks it to nothing.

    Deflate data of empty stored blocks inflates to no bytes at all; gzipped, many of them fit in a
    few kilobytes. Without a bound on the middle layer, such a body would cost work without end.
    """
    empty_blocks = b"\x00\x00\x00\xff\xff" * (CAP.slack_bytes // 5 + 1) + b"\x03\x00"  # raw deflate
    assert read(["deflate"], [b"\x00\x00\x00\xff\xff\x03\x00"]) == b""
    with pytest.raises(BodyTooLarge, match="exceeds 1 MiB decoded"):
        read(["deflate", "gzip"], [gzip.compress(empty_blocks)])


@pytest.mark.parametrize(
    ("size_bytes", "layers"),
    [
        pytest.param(2**31, 2, id="gzip, gzip: 2 GiB in 5 KB"),
        pytest.param(2**30, 1, id="gzip: 1 GiB in 1 MB"),
    ],
)
def test_a_decompression_bomb_is_refused_within_bounded_memory(size_bytes: int, layers: int) -> None:
    """A bomb is refused once the cap is passed; the reader never holds more than about the cap."""
    encoded = bomb(size_bytes, layers)
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge, match="exceeds 1 MiB decoded"):
            read(["gzip"] * layers, split(encoded, 65536))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * CAP.max_bytes, f"peak {size_text(peak)}"


def test_the_default_details_cap_holds_the_largest_answer_flowsync_accepts() -> None:
    """The most a details answer can hold and still validate, written as loosely as JSON allows, fits."""
    emoji = "\U0001f600"  # a surrogate pair once escaped by json.dumps: 12 bytes for one character
    huge = "-9223372036854775808"
    node = {"waitingTime": huge, "status": huge, "channel": emoji * MAX_CHANNEL_CHARS, "channelCut": huge}
    flow = {"flowId": huge, "name": emoji * MAX_NAME_CHARS, "flow": [node] * MAX_NODES}
    body = json.dumps({"status": "0", "reason": "success", "data": flow}, indent=2).encode()
    parse_flow(parse_envelope(body).data)  # it is valid, so flowsync must be able to read it
    assert len(body) < DETAILS_CAP_BYTES * 0.7, "8 MiB leaves room for unknown fields"
    assert read([], [body], BodyCap(DETAILS_CAP_BYTES, "FLOWSYNC_MAX_DETAILS_BYTES")) == body


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (8 * 2**20, "8 MiB"),
        (2**32, "4 GiB"),
    ],
)
def test_sizes_read_as_people_write_them(size: int, text: str) -> None:
    assert size_text(size) == text


def test_codings_are_undone_last_first() -> None:
    """`Content-Encoding: deflate, gzip` was deflated first, so it is gunzipped first."""
    assert layers_of(["deflate", " gzip", "identity"]) == ["gzip", "deflate"]
