"""`python -m sync` is the `flowsync` command."""

from sync.cli.commands import main

main()
