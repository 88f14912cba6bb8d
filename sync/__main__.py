"""`python -m sync` is the `flowsync` command."""

from sync.cli import main

main()
