//! Finds and checks the Python 2.7 host interpreter that runs RPython.
