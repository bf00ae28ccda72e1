"""Fila's shared package: settings, messages, names and the token bucket every process uses."""

__version__ = "0.1.0"
