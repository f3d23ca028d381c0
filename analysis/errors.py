"""The one exception the analysis raises for its users' mistakes."""


class AnalysisInputError(ValueError):
    """Bad or missing input; the message says what is missing and how to fix it."""
