"""Errors shared by light and heavy modules, so the hooks can catch them without importing YAML."""


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid; the message names file:line: key."""
