"""How long prefills may hold the running streams: arrivals during a prefill prefilled before the next decoding
step without limit, against only until the running rows have waited one decoding step for them
(`Engine.hold_steps`, 2.0 by default; --holds compares others).

One real server (as serve_throughput.py builds it: adapter a0, end of turn ignored, streaming clients in a
process of their own), rounds alternating between the settings, each recording the CPU share other
processes took (/proc/stat); rounds where others took more than --max-other-load are dropped and medians are
reported. Two loads:
  - staggered: --clients streams, their requests --stagger seconds apart, so that a prefill ends with
    another request already waiting, and the next, for as long as the arrivals last;
  - closed loop: 8 clients x 4 requests, whose next requests arrive a few milliseconds apart when a batch
    ends together (what prefilling arrivals before the next step was made for).
Reported per setting: time to first token p50/p95, each stream's longest gap between two tokens (p95 over
the streams) and output tokens/s.

Run: python benchmarks/serve_prefill_hold.py [--model smollm2-135m-instruct|tiny] [--clients 32] [--rounds 3]
     [--holds 1,2]
Target: the longest gap lower with the hold, time to first token and tokens/s within 10%.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cpuload import OtherLoad, cpu_flags  # noqa: E402
from serve_throughput import PROMPTS, _Clients, start_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="base model, or 'tiny'")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--stagger", type=float, default=0.05)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-other-load", type=float, default=0.15)
    parser.add_argument("--holds", default="2", help="hold_steps values to compare with unbounded, e.g. 1,2")
    args = parser.parse_args()
    settings = {"unbounded": float("inf")} | {
        f"{h:g} step{'s' * (h != 1)}": h for h in map(float, args.holds.split(","))
    }

    from tunesmith.stats import p95

    running, _, _ = start_server(args.model, "serve-hold-", 1, max(args.clients, 8))
    engine = running.app.state.server.engine
    loads = {
        "staggered": (
            [(PROMPTS[i % len(PROMPTS)], args.tokens) for i in range(args.clients)],
            args.clients,
            args.stagger,
        ),
        "closed loop": ([(PROMPTS[i % len(PROMPTS)], args.tokens) for i in range(32)], 8, 0.0),
    }
    results: dict = {(load, s): [] for load in loads for s in settings}
    dropped = 0
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        client = _Clients(pool, f"{running.url}/v1")
        client.server(["a0"], list(loads["closed loop"][0][:2]), 2)  # warm-up
        for r in range(args.rounds):
            for load, (work_list, clients, stagger) in loads.items():
                for setting, hold in settings.items():
                    engine.hold_steps = hold
                    with OtherLoad(ours=(client.pid,)) as other:
                        out = client.server(["a0"], work_list, clients, stagger)
                    row = {
                        "ttft_p50": statistics.median(out["ttft"]),
                        "ttft_p95": p95(out["ttft"]),
                        "stall_p95": p95(out["stall"]),
                        "tok_s": sum(n for _, n in work_list) / out["wall"],
                    }
                    bad = other.share > args.max_other_load
                    print(
                        f"round {r + 1} {load:11s} {setting:9s} TTFT p50 {row['ttft_p50']:.2f} s p95 "
                        f"{row['ttft_p95']:.2f} s  longest gap p95 {row['stall_p95']:.2f} s  {row['tok_s']:.1f} tok/s"
                        f"  others {other.share:.0%}{'  (dropped)' if bad else ''}",
                        flush=True,
                    )
                    if bad:
                        dropped += 1
                    else:
                        results[(load, setting)].append(row)
    running.stop()
    print(f"\n{args.model}, {' '.join(cpu_flags())}, {args.rounds} rounds, {dropped} dropped; medians:")
    for (load, setting), rows in results.items():
        if not rows:
            print(f"  {load:11s} {setting:9s} no clean rounds")
            continue
        m = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"  {load:11s} {setting:9s} TTFT p50 {m['ttft_p50']:.2f} s p95 {m['ttft_p95']:.2f} s  "
            f"longest gap p95 {m['stall_p95']:.2f} s  {m['tok_s']:.1f} tok/s"
        )


if __name__ == "__main__":
    main()
