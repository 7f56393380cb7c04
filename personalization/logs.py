"""Logging filters of the ``LOGGING`` setting."""

import logging


class ClientErrorsConcise(logging.Filter):
    """A 4xx is the client's mistake, expected: Django logs some (a PermissionDenied, a bad
    Host) with the exception's traceback, which says nothing about our code and buries real
    errors. Keep their one line; tracebacks stay for 5xx and everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
