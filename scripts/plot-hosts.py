#!/usr/bin/python3
"""Draws scripts/bench-hosts.sh's figures from DIR/runs.csv into DIR (Debian's
python3-matplotlib): throughput against shards per authority and against committee size
(throughput.csv, throughput-shards.png, throughput-committee.png), and latency against load
(latency-load.png).

Throughput at a point is given two ways: the highest offered rate sustained (at most 1% of
requests timed out and p99 under P99_BOUND_US), and the payments completed per second under
the highest offered load (the saturated goodput; the coarse grid of offered rates makes the
first a step function).

    scripts/plot-hosts.py DIR
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# p99 above this (µs) means the run queued rather than kept up.
P99_BOUND_US = 500_000

out = sys.argv[1]
runs = list(csv.DictReader(open(f"{out}/runs.csv")))


def sustained(rows):
    good = [r for r in rows
            if float(r["loss"]) <= 0.01 and float(r["p99_us"]) <= P99_BOUND_US]
    return max((float(r["achieved_rate"]) for r in good), default=0.0)


def saturated(rows):
    top = max(rows, key=lambda r: float(r["target_rate"]))
    return float(top["achieved_rate"]), int(float(top["target_rate"]))


with open(f"{out}/throughput.csv", "w") as f:
    f.write("figure,x,sustained_per_s,saturated_per_s,saturating_offered_per_s\n")
    for figure, key, label in [
        ("shards", "shards", "shards per authority (4 authorities)"),
        ("committee", "authorities", "authorities in the committee (1 shard each)"),
    ]:
        points = {}
        for r in runs:
            if r["figure"] == figure:
                points.setdefault(int(r[key]), []).append(r)
        xs = sorted(points)
        if not xs:
            continue
        kept = [sustained(points[x]) for x in xs]
        goodput = [saturated(points[x]) for x in xs]
        for x, k, (g, offered) in zip(xs, kept, goodput):
            f.write(f"{figure},{x},{k:.0f},{g:.0f},{offered}\n")
        plt.figure(figsize=(5.5, 3.8))
        plt.plot(xs, kept, "o-", label="sustained (≤1% lost, p99 ≤ 500 ms)")
        plt.plot(xs, [g for g, _ in goodput], "s--",
                 label=f"completed under {goodput[0][1]}/s offered")
        plt.xlabel(label)
        plt.ylabel("payments per second")
        plt.xticks(xs)
        plt.ylim(bottom=0)
        plt.legend(fontsize=8)
        plt.grid(alpha=0.3)
        plt.tight_layout()
        plt.savefig(f"{out}/throughput-{figure}.png", dpi=120)
        plt.close()

load = sorted((r for r in runs if r["figure"] == "load"), key=lambda r: float(r["target_rate"]))
if load:
    plt.figure(figsize=(5.5, 3.8))
    for q in ["p50", "p99"]:
        plt.plot([float(r["target_rate"]) for r in load],
                 [float(r[f"{q}_us"]) / 1000 for r in load], "o-", label=q)
    rates = [float(r["target_rate"]) for r in load]
    plt.xscale("log", base=2)
    plt.xticks(rates, [f"{x:.0f}" for x in rates])
    plt.minorticks_off()
    plt.yscale("log")
    plt.xlabel("offered payments per second (4 authorities × 2 shards)")
    plt.ylabel("payment latency (ms)")
    plt.legend()
    plt.grid(alpha=0.3, which="both")
    plt.tight_layout()
    plt.savefig(f"{out}/latency-load.png", dpi=120)
    plt.close()
