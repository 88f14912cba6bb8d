"""Summarise a py-spy profile (`py-spy record -f raw`) as the functions that cost the most.

    py-spy record -r 200 -f raw -o sync.raw -- python -m sync sync
    python -m benchmarks.profile_summary sync.raw [--top 25] [--focus sync/]

`self` is the share of samples where the function itself was running, `total` the
share where it was anywhere on the stack. Line numbers are dropped, so every call
site of a function adds up. `where` puts each sample in the first of flowsync's
concerns found on its stack (imports, the run lock check, writing, parsing, the
HTTP client, ...), which is the quickest answer to "what does a run spend its CPU on".
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (concern, text that marks it on a stack), the first match wins.
CONCERNS = (
    ("imports at start-up", "_find_and_load"),
    ("run lock check (per batch)", "verify (sync/lock.py)"),
    ("database writes (store)", "write_results (sync/store.py)"),
    ("all mode: listing + write loop", "sync_listing (sync/run.py)"),
    ("payload parsing and validation", "parse_"),
    ("snapshot and content hash", "sync/snapshot.py"),
    ("retry wrapper (tenacity)", "tenacity/"),
    ("HTTP client (httpx + aiohttp)", "_attempt (sync/client.py)"),
    ("fetch loop, queue, event loop", "run_forever (asyncio/base_events.py)"),
    ("idle worker thread", "_worker (concurrent/futures/thread.py)"),
)

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_key(frame: str) -> str:
    """`Client.get (httpx/_client.py:1768)` becomes `Client.get (httpx/_client.py)`."""
    match = _FRAME.match(frame.strip())
    return f"{match['name']} ({match['file']})" if match else frame.strip()


def concern(stack: str) -> str:
    return next((name for name, marker in CONCERNS if marker in stack), "other")


def summarise(path: Path) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    """Total samples; samples per function where it ran itself and where it was on the stack; per concern."""
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    concerns: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_key(frame) for frame in stack.split(";")]
        total += count
        concerns[concern(";".join(frames))] += count
        own[frames[-1]] += count
        for key in set(frames):
            inclusive[key] += count
    return total, own, inclusive, concerns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, help="py-spy output written with `-f raw`")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--focus", default="", help="list only functions whose file contains this text")
    args = parser.parse_args(argv)
    total, own, inclusive, concerns = summarise(args.raw)
    print(f"{total} samples")
    for title, counter in (("where", concerns), ("self", own), ("total", inclusive)):
        print(f"\n{title:>6}  function")
        shown = [(key, n) for key, n in counter.most_common() if args.focus in key][: args.top]
        for key, count in shown:
            print(f"{100 * count / total:5.1f}%  {key}")


if __name__ == "__main__":
    main()
