# The Python side of `cargo xtask bench --only typed`, the same text for
# embed-runtime on PyPy and for PyO3 on CPython.
import json


def overhead(i, s):
    return {s: i * 0.5, "double": float(i * 2), "one": 1.0}


def hot(n):
    total = 0
    for k in range(n):
        total = (total + k * k) % 1000003
    return total


def overhead_json(data):
    i, s = json.loads(data)
    return json.dumps(overhead(i, s))
