"""One module per LSP request or notification family; each has `register(server)`."""
