"""Plots `cairn workload run --timeseries` CSV files: throughput and p50/p99 latency
per second, one line per operation (and per file, when several are given).

    python3 bench/plot.py OUT.png TITLE LABEL=FILE.csv [LABEL=FILE.csv ...]

Needs matplotlib (bench/compare.sh installs it in a virtual environment).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    out, title, series = sys.argv[1], sys.argv[2], sys.argv[3:]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for spec in series:
        label, path = spec.split("=", 1)
        by_op = {}
        with open(path) as f:
            for row in csv.DictReader(f):
                by_op.setdefault(row["op"], []).append(row)
        for op, rows in sorted(by_op.items()):
            t = [float(r["seconds"]) for r in rows]
            name = f"{label} {op}"
            top.plot(t, [float(r["ops_per_sec"]) for r in rows], label=name)
            bottom.plot(t, [float(r["p50_ms"]) for r in rows], label=f"{name} p50")
            bottom.plot(t, [float(r["p99_ms"]) for r in rows], "--", label=f"{name} p99")
    top.set_title(title)
    top.set_ylabel("operations/s")
    top.set_ylim(bottom=0)
    top.legend(loc="lower right", fontsize="small")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds")
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main()
