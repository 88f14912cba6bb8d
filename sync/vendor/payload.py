"""The vendor API's response bodies, validated.

Lenient where a real API is sloppy (unknown fields are ignored, integers may come
as numeric strings, `status` as a number), strict where a value cannot be trusted
(booleans or fractions for integers, NUL characters, duplicate JSON keys, values
too large for the database). Values outside the documented ranges (a waiting time
of 5 s, a channel called "fax") are kept as received: flowsync records what the
vendor holds, it does not correct it.

Everything here is pure: bytes in, models or `ValueError` out. The client turns
those errors into `PayloadError` with the flow and endpoint attached.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from sync.core.snapshot import FlowSnapshot, NodeSnapshot

MAX_NAME_CHARS = 255
MAX_CHANNEL_CHARS = 32
MAX_NODES = 10_000
_INT64 = 2**63
_NUMERIC = re.compile(r"[+-]?[0-9]{1,19}")  # ASCII digits only: int() would also read "٣٠"
MAX_STATUS_CHARS = 32  # flow_history.error_code
MAX_KEY_CHARS = 40  # a duplicate JSON key longer than this is described, not quoted

# The most one answer may decode to (FLOWSYNC_MAX_DETAILS_BYTES, FLOWSYNC_MAX_LISTING_BYTES).
# The largest details answer the checks below accept is about 5 MiB: MAX_NODES nodes with every
# integer a 20-digit string and every character of the name and channel a \uXXXX\uXXXX escape,
# indented (tests/test_body.py builds it). 8 MiB leaves room for unknown fields and whitespace.
DETAILS_CAP_BYTES = 8 * 2**20
# A listing has no documented size: a flow of a few nodes takes about 200 bytes (the API's names
# are 4-32 characters, waits 30-120 s), so 64 MiB holds some 300,000 of them, three times the
# largest account measured (100,000 flows, 20 MB). Reading a listing takes about three times
# its size in memory while it is held as text and scanned.
LISTING_CAP_BYTES = 64 * 2**20


def _api_int(value: object) -> int:
    """An integer as the API may send it: a JSON number or a numeric string, within 64 bits."""
    number = _integer(value)
    if not -_INT64 <= number < _INT64:
        raise ValueError("integer outside the 64-bit range")
    return number


def _integer(value: object) -> int:
    """A JSON number or a numeric string that is a whole number, of any size."""
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise ValueError(f"expected an integer, got {_describe(value)}")
    return number


def _api_text(limit: int) -> BeforeValidator:
    def check(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_describe(value)}")
        if "\x00" in value:
            raise ValueError("contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("contains an unpaired surrogate") from None
        if len(value) > limit:
            raise ValueError(f"longer than {limit} characters ({len(value)})")
        return value

    return BeforeValidator(check)


def _status_text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected a status code, got {_describe(value)}")
    text = str(value).strip()
    if len(text) > MAX_STATUS_CHARS:
        raise ValueError(f"status code longer than {MAX_STATUS_CHARS} characters")
    return text


def _reason_text(value: object) -> str | None:
    # The reason is only ever shown to people: a number or other scalar is still a usable reason.
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")  # no lone surrogates
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"expected a reason text, got {_describe(value)}")


def _key_name(key: str) -> str:
    """A JSON key as an error names it: whole, or by its length when long.

    Never a piece of it: a key may echo what the request carried, which the client can only
    mask where it appears whole.
    """
    return repr(key) if len(key) <= MAX_KEY_CHARS else f"of {len(key)} characters"


def _describe(value: object) -> str:
    """The type of a bad value, never the value: a body may echo what the request carried."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return type(value).__name__


ApiInt = Annotated[int, BeforeValidator(_api_int)]


class ApiNode(BaseModel):
    """One node of a flow as the API sends it (`waitingTime` in seconds)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    waiting_time: ApiInt = Field(alias="waitingTime")
    status: ApiInt
    channel: Annotated[str, _api_text(MAX_CHANNEL_CHARS)]
    # The vendor documents 0 as the default, so a node without it means 0.
    channel_cut: ApiInt = Field(default=0, alias="channelCut")


class ApiFlow(BaseModel):
    """A flow as `/flow/details/{id}` and `/flow/list` send it."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    flow_id: ApiInt = Field(alias="flowId")
    name: Annotated[str, _api_text(MAX_NAME_CHARS)]
    nodes: tuple[ApiNode, ...] = Field(alias="flow", max_length=MAX_NODES)


class Envelope(BaseModel):
    """The wrapper around every answer: `status` "0" means success."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Annotated[str, BeforeValidator(_status_text)]
    reason: Annotated[str | None, BeforeValidator(_reason_text)] = None
    data: Any = None

    @property
    def ok(self) -> bool:
        return self.status == "0"


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {_key_name(key)} in a JSON object")
        result[key] = value
    return result


def parse_envelope(body: bytes) -> Envelope:
    """Decode a response body into its envelope; `ValueError` says why it cannot be trusted."""
    text = _body_text(body)
    try:
        document = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise ValueError(_not_json(body, exc)) from exc
    except RecursionError as exc:
        raise ValueError("body nests too deeply") from exc
    if not isinstance(document, dict):
        raise ValueError(f"body is a JSON {type(document).__name__}, not an object")
    return _envelope(document)


@dataclass(frozen=True, slots=True)
class ListedItems:
    """The items of a `/flow/list` answer's `data` array, kept as text and decoded one at a time.

    Decoded, a listed flow takes about 1 KB; as text, about 150 bytes. Keeping the text and
    decoding a batch at a time lets a sync of a large account stay within bounded memory.
    `flow_ids` holds each item's integer `flowId` (None where it has none), read while scanning.
    """

    text: str
    bounds: array[int]  # start and end of each item in `text`, in pairs
    flow_ids: list[int | None]

    def __len__(self) -> int:
        return len(self.flow_ids)

    def __iter__(self) -> Iterator[object]:
        for start in range(0, len(self.bounds), 2):
            yield _STRICT.raw_decode(self.text, self.bounds[start])[0]


def parse_listing(body: bytes) -> tuple[Envelope, ListedItems | None]:
    """`parse_envelope` for `/flow/list`: a `data` array is scanned and checked, not kept decoded.

    The items come back as `ListedItems`; None when `data` is not an array (its value is then in
    the envelope, as `parse_envelope` would give it). Errors are the same as `parse_envelope`'s.
    """
    text = _body_text(body)
    try:
        scanned = _scan_envelope(text)
    except json.JSONDecodeError as exc:
        # The scan found the body is not JSON; json.loads says why, in its own words (which
        # change between Python versions), exactly as for any other answer.
        parse_envelope(body)
        raise ValueError(_not_json(body, exc)) from exc  # pragma: no cover - parse_envelope raised
    except RecursionError as exc:
        raise ValueError("body nests too deeply") from exc
    if scanned is None:  # not an object: let the general parser say what it is
        return parse_envelope(body), None
    fields, items = scanned
    return _envelope(fields), items


_STRICT = json.JSONDecoder(object_pairs_hook=_refuse_duplicate_keys)
_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace


def _body_text(body: bytes) -> str:
    if not body.strip():
        raise ValueError("empty body")
    try:
        # Decode strictly first: json.loads(bytes) would guess UTF-16/32 and pass lone surrogates.
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError("body is not UTF-8 text") from exc


def _not_json(body: bytes, exc: json.JSONDecodeError) -> str:
    shape = "an HTML page" if body.lstrip()[:1] == b"<" else "not JSON"
    return f"body is {shape} ({exc.msg} at byte {exc.pos})"


def _envelope(document: dict[str, Any]) -> Envelope:
    try:
        return Envelope.model_validate(document)
    except ValidationError as exc:
        raise ValueError(explain(exc)) from exc


def _skip_space(text: str, index: int) -> int:
    match = _SPACE.match(text, index)
    return match.end() if match else index


def _scan_envelope(text: str) -> tuple[dict[str, Any], ListedItems | None] | None:
    """The top-level object's members, with a `data` array scanned into `ListedItems`; None if no object."""
    index = _skip_space(text, 0)
    if not text.startswith("{", index):
        return None
    fields: dict[str, Any] = {}
    items: ListedItems | None = None
    duplicate: str | None = None
    index = _skip_space(text, index + 1)
    if not text.startswith("}", index):
        while True:
            if not text.startswith('"', index):
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, index)
            key, index = _STRICT.raw_decode(text, index)
            index = _skip_space(text, index)
            if not text.startswith(":", index):
                raise json.JSONDecodeError("Expecting ':' delimiter", text, index)
            index = _skip_space(text, index + 1)
            if key in fields and duplicate is None:
                duplicate = key  # said once the object is read whole, as json.loads would
            if key == "data" and text.startswith("[", index):
                fields[key], (items, index) = None, _scan_items(text, index)
            else:
                fields[key], index = _STRICT.raw_decode(text, index)
            index = _skip_space(text, index)
            if text.startswith("}", index):
                break
            if not text.startswith(",", index):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
            index = _skip_space(text, index + 1)
    if duplicate is not None:
        raise ValueError(f"duplicate key {_key_name(duplicate)} in a JSON object")
    end = _skip_space(text, index + 1)  # past the closing brace
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return fields, items


def _scan_items(text: str, index: int) -> tuple[ListedItems, int]:
    """Check every item of the array at `index` and note where it is; returns the index after `]`."""
    bounds: array[int] = array("q")
    flow_ids: list[int | None] = []
    index = _skip_space(text, index + 1)
    if text.startswith("]", index):
        return ListedItems(text, bounds, flow_ids), index + 1
    while True:
        item, end = _STRICT.raw_decode(text, index)
        bounds.extend((index, end))
        flow_ids.append(listed_flow_id(item))
        index = _skip_space(text, end)
        if text.startswith("]", index):
            return ListedItems(text, bounds, flow_ids), index + 1
        if not text.startswith(",", index):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
        index = _skip_space(text, index + 1)


def parse_flow(data: object) -> ApiFlow:
    """Validate one flow object; `ValueError` names the offending field."""
    if not isinstance(data, dict):
        raise ValueError(f"flow data is {_describe(data)}, not an object")
    try:
        return ApiFlow.model_validate(data)
    except ValidationError as exc:
        raise ValueError(explain(exc)) from exc


def normalize(flow: ApiFlow) -> FlowSnapshot:
    """The snapshot of a validated API flow, nodes numbered from 1 in the order received."""
    return FlowSnapshot(
        flow_id=flow.flow_id,
        name=flow.name,
        nodes=tuple(
            NodeSnapshot(
                position=position,
                waiting_time=node.waiting_time,
                status=node.status,
                channel=node.channel,
                channel_cut=node.channel_cut,
            )
            for position, node in enumerate(flow.nodes, start=1)
        ),
    )


def listed_flow_id(item: object) -> int | None:
    """The `flowId` of a `/flow/list` item, when it is an integer at all (whether a flow can have it
    is `sync.core.selection`'s rule, applied by the client)."""
    if not isinstance(item, dict):
        return None
    try:
        return _integer(item.get("flowId"))
    except ValueError:
        return None


def explain(exc: ValidationError) -> str:
    """The first validation problem as `field.path: message`, without echoing the input."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False)[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
