"""The credential broker: holds the sources' secrets and does only what a scoped token allows."""
