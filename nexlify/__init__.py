"""The guide's import paths (``nexlify.monitoring.*``): re-exports of traindash, nothing more."""
