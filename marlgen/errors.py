"""Exceptions marlgen raises on purpose, so callers can catch them apart from bugs."""


class MarlgenError(Exception):
    """Base of marlgen's own errors: the message says what went wrong and how to fix it."""


class CheckpointError(MarlgenError):
    """A checkpoint file is corrupt or does not fit the code that reads it."""


class TrainingDiverged(MarlgenError):
    """A network's weights or losses became NaN or infinite during training."""


def brief(err: BaseException) -> str:
    """``Type: first sentence`` of a library's error, for one-line messages (torch's run on for lines)."""
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    if len(line) > 100 and ". " in line:
        line = line[: line.index(". ")]
    return f"{type(err).__name__}: {line}" if line else type(err).__name__
