"""The collector: the only process that opens the DuckDB file."""
