"""The project's error types. Each message is one line a user can act on."""


class RaygrowError(Exception):
    """Any failure raygrow reports to the user as one line, without a traceback."""


class ConfigError(RaygrowError):
    """A config value is wrong. `field` is its dotted path, e.g. `train.zero_stage`."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    def __reduce__(self):  # Ray ships errors between processes: keep both fields through pickling
        return ConfigError, (self.field, self.message)

    def under(self, prefix: str) -> "ConfigError":
        """The same error, with its field placed under `prefix` (a parent section)."""
        if not self.field:
            return ConfigError(prefix, self.message)
        joiner = "" if self.field.startswith("[") else "."
        return ConfigError(f"{prefix}{joiner}{self.field}", self.message)


class DataError(RaygrowError):
    """A corpus, path or tokenizer cannot be used."""


class CheckpointError(RaygrowError):
    """A checkpoint is incomplete, truncated or tampered with."""


def first_line(error: BaseException) -> str:
    """The last line of an error's text (a worker's error ends with the exception itself, after
    its traceback): what a one-line report shows."""
    text = str(error).strip() or type(error).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
