"""Language-server front end: LSP conversions, hover text, and the pygls server."""
