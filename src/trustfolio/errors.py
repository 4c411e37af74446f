"""Errors that mean "the user asked for something wrong", as opposed to a bug.

The CLI turns any `TrustfolioError` into one line on stderr and exit status 2; everything else is a
bug and keeps its traceback. Messages say what is wrong, where, and how to fix it.
"""


class TrustfolioError(Exception):
    """Base class of every user-facing error."""


class UserError(TrustfolioError, ValueError):
    """A bad argument: unknown name, inverted date range, invalid option."""


class DataError(TrustfolioError, ValueError):
    """Bad market data: missing or malformed file, unsorted dates, non-positive prices, …"""
