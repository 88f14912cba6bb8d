"""The `flowsync` command line: commands, tables, progress, logging and the guided demo."""
