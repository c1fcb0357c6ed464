"""The configuration error every setting reports (core.config, core.targets): its message is one
line saying what to set instead; the CLI prints it and exits 2."""


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and what to set."""
