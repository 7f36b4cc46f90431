# Pure-Python workloads for `cargo xtask bench --only portable`, of the kind
# pyperformance has (objects and method calls, floating point, json, regular
# expressions, dicts and sorting), written for this project. Run as
# `pypy workloads.py NAME`: warms up (the JIT compiles), then prints the
# seconds of the measured runs.
import json
import re
import sys
import time


def scheduler(n):
    # Tasks passing packets through queues: attribute access, method calls,
    # small objects, branches (what richards exercises).
    class Packet(object):
        __slots__ = ("dest", "kind", "data", "link")

        def __init__(self, dest, kind, link=None):
            self.dest, self.kind, self.data, self.link = dest, kind, 0, link

    class Task(object):
        def __init__(self, ident, prio):
            self.ident, self.prio, self.queue, self.count = ident, prio, [], 0

        def run(self, packet, tasks):
            self.count += 1
            packet.data = (packet.data * 31 + self.ident) & 0xFFFF
            nxt = tasks[(self.ident + packet.kind + 1) % len(tasks)]
            packet.dest = nxt.ident
            nxt.queue.append(packet)

    tasks = [Task(i, i % 3) for i in range(8)]
    for i in range(64):
        tasks[i % 8].queue.append(Packet(i % 8, i % 4))
    for _ in range(n):
        for task in sorted(tasks, key=lambda t: -t.prio):
            if task.queue:
                task.run(task.queue.pop(0), tasks)
    return sum(t.count for t in tasks)


def nbody(n):
    # Five bodies under gravity, advanced with a fixed step.
    bodies = [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 39.47],
        [4.84, -1.16, -0.10, 0.606, 2.81, -0.02, 0.037],
        [8.34, 4.12, -0.40, -1.01, 1.82, 0.008, 0.011],
        [12.89, -15.11, -0.22, 1.08, 0.868, -0.010, 0.0017],
        [15.37, -25.91, 0.17, 0.979, 0.594, -0.034, 0.0020],
    ]
    dt = 0.01
    for _ in range(n):
        for i in range(5):
            bi = bodies[i]
            for j in range(i + 1, 5):
                bj = bodies[j]
                dx, dy, dz = bi[0] - bj[0], bi[1] - bj[1], bi[2] - bj[2]
                d2 = dx * dx + dy * dy + dz * dz
                mag = dt / (d2 * d2 ** 0.5)
                mi, mj = bi[6] * mag, bj[6] * mag
                bi[3] -= dx * mj
                bi[4] -= dy * mj
                bi[5] -= dz * mj
                bj[3] += dx * mi
                bj[4] += dy * mi
                bj[5] += dz * mi
        for b in bodies:
            b[0] += dt * b[3]
            b[1] += dt * b[4]
            b[2] += dt * b[5]
    return bodies[0][0]


def json_roundtrip(n):
    doc = {
        "name": "portable", "ok": True, "nothing": None,
        "items": [{"id": i, "score": i * 0.5, "tags": ["a", "b", str(i)]} for i in range(50)],
        "text": "caf\u00e9 \u2603 " * 10,
    }
    total = 0
    for _ in range(n):
        text = json.dumps(doc)
        total += len(json.loads(text)["items"])
    return total


def regex(n):
    text = " ".join("user%d@host%d.example.org 10.0.%d.%d GET /p/%d" % (i, i % 7, i % 256, i % 100, i)
                    for i in range(200))
    mail = re.compile(r"([a-z0-9]+)@([a-z0-9.]+)\.org")
    addr = re.compile(r"\b(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\b")
    found = 0
    for _ in range(n):
        found += len(mail.findall(text)) + sum(1 for _ in addr.finditer(text))
        found += len(re.sub(r"/p/(\d+)", r"/q/\1", text))
    return found


def dicts(n):
    words = ["w%d" % (i * 7919 % 1000) for i in range(2000)]
    total = 0
    for _ in range(n):
        counts = {}
        for w in words:
            counts[w] = counts.get(w, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        total += ranked[0][1]
    return total


WORKLOADS = {
    "scheduler": (scheduler, 60000),
    "nbody": (nbody, 120000),
    "json": (json_roundtrip, 800),
    "regex": (regex, 180),
    "dicts": (dicts, 60),
}


def main():
    fn, n = WORKLOADS[sys.argv[1]]
    fn(n)  # warm-up: the JIT compiles the loops
    start = time.perf_counter()
    for _ in range(3):
        fn(n)
    print("%.6f" % (time.perf_counter() - start))


if __name__ == "__main__":
    main()
