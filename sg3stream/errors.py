"""Errors that reach the user as one clear line (no traceback unless --debug)."""


class UserError(Exception):
    """A problem with the user's input or environment: the message names it and says what is accepted."""


class StageError(Exception):
    """An exception raised inside a pipeline stage, with the stage's name and the frames it was working on."""

    def __init__(self, stage: str, frame_range: tuple[int, int] | None, cause: BaseException):
        where = f" (frames {frame_range[0]}-{frame_range[1]})" if frame_range and frame_range[0] >= 0 else ""
        super().__init__(f"stage '{stage}' failed{where}: {type(cause).__name__}: {cause}")
        self.stage = stage
        self.frame_range = frame_range
        self.cause = cause
