"""The guide's ``nexlify.monitoring`` package; each submodule re-exports the real class."""
