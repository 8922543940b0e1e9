"""The one exception type for unusable raw input files.

``prepare_data.py`` skips a file that raises :class:`BadFileError` (logging the message as
the reason) or, with ``--strict``, stops on it. Messages say what was expected, what was
found and where, so the message alone is a useful log line.
"""


class BadFileError(ValueError):
    """A raw input file (image, labelme JSON, VOC XML) that cannot be used as it is."""
