"""How `flowsync verify` prints what it finds: as it finds it, so a long report never sits in memory.

The table format writes one line per disagreement (table, key, what differs) and then a
summary; the JSON format writes one document, `{"disagreements": [...], "ok", "chain",
"head", ...}`, streamed the same way, for `jq -r .head` and other machines. Stored text
in a message is escaped like every other output (`sync.core.safe_text`).
"""

from __future__ import annotations

import json

import click

from sync.core.audit import Disagreement
from sync.core.safe_text import escape_unsafe
from sync.store.verify import VerifySummary

CHAIN_WORDS = {
    "sha256": "SHA-256 chain, checked without an audit key (FLOWSYNC_AUDIT_KEY not set)",
    "hmac-sha256": "HMAC-SHA-256 chain, checked under FLOWSYNC_AUDIT_KEY",
}


class TableReport:
    """Aligned lines on stdout, then the summary."""

    def __init__(self) -> None:
        self.count = 0

    def disagreement(self, found: Disagreement) -> None:
        if self.count == 0:
            click.echo(f"{'table':<18}  {'key':<28}  what differs")
        self.count += 1
        click.echo(escape_unsafe(f"{found.table:<18}  {found.key:<28}  {found.problem}"))

    def summary(self, summary: VerifySummary) -> None:
        checked = ", ".join(summary.tables)
        if summary.ok:
            click.echo(
                f"verified: {summary.events} events ({summary.configuration_events} configuration events) "
                f"agree with the chain and with {checked}"
            )
        else:
            click.echo(
                f"NOT verified: {summary.disagreements} disagreement(s) in {summary.events} events "
                f"({summary.configuration_events} configuration events)"
            )
        click.echo(f"chain: {CHAIN_WORDS[summary.chain]}")
        click.echo(f"head: {summary.head or 'none (no configuration event yet)'}")


class JsonReport:
    """One JSON document on stdout, the disagreements first, the summary's fields after them."""

    def __init__(self) -> None:
        self.count = 0
        click.echo('{"disagreements": [', nl=False)

    def disagreement(self, found: Disagreement) -> None:
        click.echo(("" if self.count == 0 else ", ") + json.dumps(found.as_json()), nl=False)
        self.count += 1

    def summary(self, summary: VerifySummary) -> None:
        fields = {
            "ok": summary.ok,
            "chain": summary.chain,
            "head": summary.head,
            "events": summary.events,
            "configuration_events": summary.configuration_events,
            "disagreement_count": summary.disagreements,
            "tables": list(summary.tables),
        }
        click.echo("], " + json.dumps(fields)[1:])
