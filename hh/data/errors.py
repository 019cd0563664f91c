"""The one error type for bad input data, raised by every reader in hh.data.

Its message always starts with the file, then the line (where the problem has one), then the
problem, so a broken download or a hand-edited file points at itself.
"""


class DataError(ValueError):
    """Bad input: `str(e)` is "<file>, line <n>: <problem>"; no line for whole-file problems."""

    def __init__(self, path, problem: str, line: int | None = None):
        self.path, self.problem, self.line = str(path), problem, line
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {problem}")
