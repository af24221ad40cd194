"""Exceptions marlgen raises on purpose, so callers can catch them apart from bugs."""


class MarlgenError(Exception):
    """Base of marlgen's own errors: the message says what went wrong and how to fix it."""


class CheckpointError(MarlgenError):
    """A checkpoint file is corrupt or does not fit the code that reads it."""


class TrainingDiverged(MarlgenError):
    """A network's weights or losses became NaN or infinite during training."""
