"""Formats an operator reads and writes (config files, log lines): not part of the wire."""
