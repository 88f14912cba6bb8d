"""A small soak on every backend: many faulty runs, then the database must match what was served."""

from __future__ import annotations

from tests.soak import soak


def test_soak_leaves_no_mismatch(database_url: str) -> None:
    """After runs failing in every way at once, the database, its history and its counts all agree."""
    report = soak(database_url, runs=12, flows_count=30, fault_rate=0.25, seed=7)
    assert report.mismatches == []
    assert report.run_statuses["partial"] >= 1, "faults were really injected"
    assert report.run_statuses["failed"] >= 1, "an account-level refusal was part of the scenario"
    assert {"created", "changed", "deleted", "error"} <= set(report.events)
    assert len(report.faults) >= 8, report.faults
