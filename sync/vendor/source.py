"""The vendor API as the source of a run (`sync.pipeline.ports.FlowSource`).

It turns the client's answers into the pure core's terms: a flow's details become its
canonical snapshot, and a listing yields results a batch at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

from sync.core.outcomes import Failed, Fetched, FetchResult
from sync.core.snapshot import FlowSnapshot
from sync.vendor.client import FlowApiClient, Listing
from sync.vendor.payload import ApiFlow, normalize


class ApiFlowSource:
    """Fetches flows through a `FlowApiClient` (which the caller opens and closes)."""

    def __init__(self, client: FlowApiClient) -> None:
        self._client = client

    async def fetch_flow(self, flow_id: int) -> FlowSnapshot | None:
        flow = await self._client.flow_details(flow_id)
        return None if flow is None else normalize(flow)

    async def fetch_listing(self) -> ListingResults:
        return ListingResults(await self._client.flow_list())


class ListingResults:
    """A `/flow/list` answer as run results, each item validated when its batch is taken."""

    def __init__(self, listing: Listing) -> None:
        self._listing = listing
        self.flow_ids = listing.flow_ids

    def __len__(self) -> int:
        return len(self._listing)

    def batches(self, size: int) -> Iterator[list[FetchResult]]:
        for batch in self._listing.batches(size):
            yield [
                Fetched(item.flow_id, normalize(item)) if isinstance(item, ApiFlow) else Failed(flow_id, item)
                for flow_id, item in batch
            ]
