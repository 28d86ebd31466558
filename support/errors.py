"""Errors a user can fix: a missing file, a bad value. Every script prints one as a single line."""


class UserError(Exception):
    """Something the user can fix (a missing file, a bad value). Scripts print it in one line
    (utils.run_main) and exit with status 2."""
