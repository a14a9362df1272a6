"""The suite's own exceptions, importable by every layer without importing anything else."""


class ConfigError(ValueError):
    """A configuration mistake: unknown key, bad value, unknown experiment or dataset."""


class SkipRun(Exception):
    """Raised by a model that cannot run here (e.g. its weights are not available); the runner
    records the run as skipped with the reason, never silently replacing the model."""
