"""The local stage: the whole API on loopback with no Docker and no AWS (see README)."""
