"""Policy sidecar for multi-registry container image replication."""

__version__ = "0.1.0"
