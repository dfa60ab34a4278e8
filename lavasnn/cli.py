"""The `lavasnn` command line.

Every command exits 0 on success. Bad input (a :class:`~lavasnn.errors.UserError`) prints one
line ``lavasnn: error: ...`` to stderr and exits 2, without a traceback; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import metadata

from lavasnn import __version__
from lavasnn.errors import UserError

VERSIONED_PACKAGES = ("lavasnn", "lava-nc", "lava-dl", "numpy", "scipy", "torch", "h5py", "nir")


def _versions() -> dict[str, str | None]:
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = ".".join(map(str, sys.version_info[:3]))
    return out


def cmd_info(args: argparse.Namespace) -> int:
    from lavasnn.backends import backend_status
    from lavasnn.chips import load_all

    profiles = load_all(args.chips_dir)
    report = {
        "versions": _versions(),
        "backends": {name: {"available": s.available, "reason": s.reason}
                     for name, s in backend_status().items()},
        "chips": {name: p.summary() for name, p in profiles.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"lavasnn {__version__}")
    print("versions: " + ", ".join(f"{k} {v or 'missing'}" for k, v in report["versions"].items()))
    print("backends:")
    for name, s in report["backends"].items():
        print(f"  {name:4s} {'available' if s['available'] else 'unavailable'}: {s['reason']}")
    print("chips:")
    for name, p in profiles.items():
        figures = ", ".join(f"{k} {v['value']:g}" + ("" if v["unit"] == "count" else f" {v['unit']}")
                            for k, v in report["chips"][name].items() if isinstance(v, dict))
        print(f"  {name:16s} {p.title}: {figures} [{p.path.name}; bases: {', '.join(report['chips'][name]['bases'])}]")
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    from lavasnn.backends.smoke import run_smoke

    precisions = ["fixed", "float"] if args.precision == "both" else [args.precision]
    results = {p: run_smoke(p, steps=args.steps) for p in precisions}
    counts = {p: s.sum(axis=1).tolist() for p, s in results.items()}
    same = len(results) < 2 or bool((results["fixed"] == results["float"]).all())
    ok = all(sum(c) > 0 for c in counts.values()) and same
    if args.json:
        print(json.dumps({"steps": args.steps, "spike_counts": counts, "fixed_equals_float": same, "ok": ok}))
    else:
        for p, c in counts.items():
            print(f"smoke run, Loihi2SimCfg {p:5s}: {args.steps} steps, output spike counts {c}")
        if len(results) == 2:
            print(f"fixed_pt and floating_pt spike trains identical: {same}")
        print("ok" if ok else "FAILED: no output spikes or precisions disagree")
    return 0 if ok else 1


def cmd_crosscheck(args: argparse.Namespace) -> int:
    from lavasnn.crosscheck import crosscheck_neurons

    report = crosscheck_neurons(steps_=args.steps, seed=args.seed)
    ok = report["spike_mismatches"] == 0 and report["state_mismatches"] == 0 and report["stock_lif_mismatches"] == 0
    if args.json:
        print(json.dumps(report))
    else:
        sizes = report["sizes"]
        print(f"crosscheck neurons: {sizes['in']}-{sizes['hidden']}-{sizes['out']} network, seed {args.seed}, "
              f"{report['steps']} steps, Loihi2SimCfg fixed_pt vs engine")
        print(f"  spike mismatches {report['spike_mismatches']}, state mismatches {report['state_mismatches']}, "
              f"max |state diff| {report['max_abs_state_diff']}")
        print(f"  hidden soma vs Lava's stock LIF: {report['stock_lif_mismatches']} mismatches")
        print(f"  spikes per population: {report['activity']}")
        print("ok" if ok else "MISMATCH")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lavasnn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lavasnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("info", help="versions, backends and chip profiles")
    p.add_argument("--json", action="store_true", help="print JSON (keys: versions, backends, chips)")
    p.add_argument("--chips-dir", default=None, help="folder of chip profiles (default: the repository's chips/)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("smoke", help="run a small LIF network in Lava's simulator")
    p.add_argument("--precision", choices=["fixed", "float", "both"], default="both")
    p.add_argument("--steps", type=_positive_int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_smoke)

    p = sub.add_parser("crosscheck", help="prove Lava simulation and engine agree bit for bit")
    p.add_argument("what", choices=["neurons"], help="neurons: MC-LIF, trace synapses, error neurons")
    p.add_argument("--steps", type=_positive_int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true",
                   help="print JSON (keys: steps, spike_mismatches, state_mismatches, max_abs_state_diff, ...)")
    p.set_defaults(func=cmd_crosscheck)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"lavasnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lavasnn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
