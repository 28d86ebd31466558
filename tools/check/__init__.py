"""The self-check of anyone's INF265 Project 3: `python -m tools.check PATH` (`make check`).

    __main__.py   the runner: finds the files, runs every check in its own process with a time
                  limit, prints the report card (or JSON for a teacher's many folders)
    checks.py     the checks, one function per requirement of the assignment, in its words
"""
