#!/usr/bin/env python
"""The data-parallel scaling model of benchmarks/README.md ("Scaling out"), as numbers.

One step on N ranks, per-rank batch b, no overlap of communication and compute::

    t_step(N, b) = t0 + b * 6P / F  +  t_ar(N)          (P parameters, 6P FLOPs per sample)
    t_ar(N)      = alpha + 2 (N - 1) / N * S / busbw     (ring all-reduce of S = 4P bytes)
    throughput   = N b / t_step(N, b)

``busbw`` is NCCL's "bus bandwidth" (nccl-tests' PERFORMANCE.md: for an
all-reduce, busbw = algbw * 2 (N - 1) / N, comparable across N).  The
constants below are assumptions, stated, not measurements: change them and
re-run.  ``--cpu-allreduce-ms`` takes the all-reduce time measured here.

    python scripts/scaling_model.py --cpu-allreduce-ms 0.2
"""

from __future__ import annotations

import argparse

NETS = {"784-256-10": 203_530, "784-800-10": 636_010}

# GPU compute (H100 SXM, CuPy eager): fixed per-step cost of ~25 kernel launches, and
# the FLOP rate of these skinny float32 GEMMs (~40 % of the 67 TFLOP/s FP32 peak).
T0_EAGER, T0_GRAPH, FLOPS = 150e-6, 20e-6, 25e12

# Interconnects: (alpha seconds, busbw bytes/s for 1-3 MB messages).  Published nccl-tests
# figures for 8x H100 SXM (NVLink 4 / NVSwitch) reach 450-480 GB/s busbw only for messages of
# hundreds of MB; at 1-3 MB latency dominates and 100-200 GB/s is what NCCL gets.  Across
# nodes (InfiniBand NDR, 400 Gb/s = 50 GB/s per GPU NIC): ~50 GB/s at these sizes.
LINKS = {
    "8 GPUs, one node (NVLink)": (8, 15e-6, 150e9),
    "16 GPUs, 2 nodes (IB NDR)": (16, 40e-6, 50e9),
    "64 GPUs, 8 nodes (IB NDR)": (64, 60e-6, 50e9),
}


# CPU nodes (2 cores each, as this VM): seconds per sample of one step at batch 1024 from
# benchmarks/README.md's step table (784-256-10: 6.21 ms, 784-800-10: 11.65 ms per 1024 rows),
# and MPI over 25 GbE TCP (alpha ~30 us, ~2.5 GB/s) or 100 Gb/s InfiniBand HDR (~5 us, ~10 GB/s).
CPU_PER_SAMPLE = {"784-256-10": 6.21e-3 / 1024, "784-800-10": 11.65e-3 / 1024}
CPU_LINKS = {"16 CPU nodes, 25 GbE": (16, 30e-6, 2.5e9), "16 CPU nodes, IB HDR": (16, 5e-6, 10e9)}


def allreduce(n: int, alpha: float, busbw: float, nbytes: float) -> float:
    return alpha + 2 * (n - 1) / n * nbytes / busbw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-allreduce-ms", type=float, default=None,
                        help="measured 2-rank all-reduce of 784-256-10's gradients (ms)")
    parser.add_argument("--batches", default="256,1024,4096,16384", help="per-GPU batches")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    print("| net | interconnect | t_ar us | per-GPU batch | t_step 1 GPU us (eager) | "
          "speed-up (eager) | comm share (eager) | speed-up (CUDA graphs) | comm share (graphs) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for net, params in NETS.items():
        nbytes = 4 * params
        for link, (n, alpha, busbw) in LINKS.items():
            t_ar = allreduce(n, alpha, busbw, nbytes)
            for b in batches:
                compute = b * 6 * params / FLOPS
                cells = []
                for t0 in (T0_EAGER, T0_GRAPH):
                    one = t0 + compute
                    speedup = n * one / (one + t_ar)
                    cells += [f"{speedup:.1f}x of {n}", f"{100 * t_ar / (one + t_ar):.0f}%"]
                print(f"| {net} | {link} | {1e6 * t_ar:.0f} | {b} | {1e6 * (T0_EAGER + compute):.0f} | "
                      + " | ".join(cells) + " |")
    # Where communication starts to dominate (t_ar > compute + t0), per-GPU rows:
    print()
    for net, params in NETS.items():
        for link, (n, alpha, busbw) in LINKS.items():
            t_ar = allreduce(n, alpha, busbw, 4 * params)
            rows = {name: max(0.0, (t_ar - t0) * FLOPS / (6 * params))
                    for name, t0 in (("eager", T0_EAGER), ("graphs", T0_GRAPH))}
            print(f"- {net}, {link}: communication > compute below a per-GPU batch of "
                  f"{rows['eager']:.0f} (eager) / {rows['graphs']:.0f} (CUDA graphs)")
    print()
    for net, params in NETS.items():
        for link, (n, alpha, busbw) in CPU_LINKS.items():
            t_ar = allreduce(n, alpha, busbw, 4 * params)
            rows = t_ar / CPU_PER_SAMPLE[net]
            speedups = ", ".join(f"b={b}: {n * b * CPU_PER_SAMPLE[net] / (b * CPU_PER_SAMPLE[net] + t_ar):.1f}x"
                                 for b in (64, 256, 1024))
            print(f"- {net}, {link}: t_ar {1e6 * t_ar:.0f} us; communication > compute below "
                  f"{rows:.0f} rows per rank; speed-up of {n}: {speedups}")
    if args.cpu_allreduce_ms is not None:
        nbytes = 4 * NETS["784-256-10"]
        busbw = nbytes / (1e-3 * args.cpu_allreduce_ms)  # 2 ranks: 2 (N - 1) / N = 1
        print(f"\nmeasured here: 2-rank MPI all-reduce of {nbytes / 1e6:.2f} MB in {args.cpu_allreduce_ms} ms "
              f"= {busbw / 1e9:.1f} GB/s busbw (shared memory)")


if __name__ == "__main__":
    main()
