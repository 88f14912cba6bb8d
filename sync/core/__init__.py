"""The pure model of a flow: which flows to sync, their canonical snapshot, what counts as a change.

Nothing here touches HTTP, a database or the command line (import-linter checks it).
"""
