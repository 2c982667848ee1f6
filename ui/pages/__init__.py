"""The dashboard's pages; each builds one session's layout and wires it to the shared feed."""
