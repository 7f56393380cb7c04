"""The one rule every CSV the product writes follows for its cells (dashboard downloads,
consent-history exports, access-export archives): no cell a spreadsheet would run as a
formula (CSV injection, OWASP's rule).

It lives here because every app may import ``consent`` (which imports no other project app).
"""

from numbers import Number
from typing import Any

# What makes Excel, LibreOffice or Google Sheets read a cell as a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` as a CSV cell that no spreadsheet runs as a formula.

    Text (and anything written as its text: dates, ids) that starts with ``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return gets a leading ``'``, so that a spreadsheet
    shows it as text. Numbers (``int``, ``float``, ``Decimal``, numpy's, and
    booleans) and ``None`` are returned as they are: a negative number is data, and it stays
    a number the spreadsheet can sum — only a string ``"-1+2"`` is neutralised.
    """
    if value is None or isinstance(value, Number):
        return value
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
