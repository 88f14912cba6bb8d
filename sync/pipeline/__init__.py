"""One sync run: fetch the selected flows from a source and write each result to a sink."""
