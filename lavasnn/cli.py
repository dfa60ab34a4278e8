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
from lavasnn.errors import LavaProcessError, UserError

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


CROSSCHECK_DEFAULTS = {"steps": 50, "mode": "layerwise", "grad": "surrogate", "directions": 1, "precision": "fixed",
                       "perturb_rule": "exact"}
CROSSCHECK_OPTIONS = {"neurons": {"steps"}, "loihi2": {"steps"}, "biograd": {"samples", "precision", "no_sleep"},
                      "perturb": {"samples", "mode", "grad", "directions", "perturb_rule"}}


def _exercised(what: str, report: dict) -> bool:
    """Whether the run had anything to compare: spikes, and for the learning checks changed weights."""
    if what == "neurons":
        return sum(report["activity"].values()) > 0
    if what == "loihi2":
        return report["activity"]["spikes"] > 0 and report["activity"]["weight_changes"] > 0
    return report["weights_changed"] > 0


def cmd_crosscheck(args: argparse.Namespace) -> int:
    from lavasnn import crosscheck

    given = _given(args, sorted(set().union(*CROSSCHECK_OPTIONS.values()) - CROSSCHECK_OPTIONS[args.what]))
    if given:
        raise UserError(f"{', '.join(given)} do{'es' if len(given) == 1 else ''} not apply to crosscheck {args.what} "
                        f"(it takes {', '.join(sorted(_flag(d) for d in CROSSCHECK_OPTIONS[args.what]))}, "
                        "--seed, --json)")
    _fill_defaults(args, CROSSCHECK_DEFAULTS)
    if args.what == "neurons":
        report = crosscheck.crosscheck_neurons(steps_=args.steps, seed=args.seed)
        keys = ("spike_mismatches", "state_mismatches", "stock_lif_mismatches")
    elif args.what == "loihi2":
        from lavasnn.crosscheck_loihi2 import crosscheck_loihi2
        report = crosscheck_loihi2(steps=args.steps, seed=args.seed)
        keys = ("spike_mismatches", "state_mismatches", "weight_mismatches", "tag_mismatches", "trace_mismatches")
    elif args.what == "perturb":
        from lavasnn.crosscheck_perturb import crosscheck_perturb
        report = crosscheck_perturb(samples=args.samples or 24, mode=args.mode, seed=args.seed, grad=args.grad,
                                    directions=args.directions, rule=args.perturb_rule)
        keys = ("weight_mismatches", "tangent_copy_mismatches")
    else:
        report = crosscheck.crosscheck_biograd(samples=args.samples or 8, seed=args.seed, precision=args.precision,
                                               sleep=not args.no_sleep)
        keys = ("weight_mismatches", "prediction_mismatches")
    equal, exercised = all(report[k] == 0 for k in keys), _exercised(args.what, report)
    report["exercised"] = exercised
    if args.json:
        print(json.dumps(report))
    else:
        print(f"crosscheck {args.what}: Loihi2SimCfg vs engine, seed {args.seed}")
        for k, v in report.items():
            if k != "per_step":
                print(f"  {k}: {v}")
        print("MISMATCH" if not equal else "ok" if exercised else
              "NOTHING TESTED: no spikes or no weight changes in this run; give it more --steps or --samples")
    return 0 if equal and exercised else 1


BIOGRAD_EPOCHS = 15
BIOGRAD_DEFAULTS = {"data": "mnist5k", "hidden": [500, 100], "epochs": BIOGRAD_EPOCHS, "steps": 50, "lr": 1e-3,
                    "lr_decay": 1.0, "seed": 0, "sleep_batch": 128, "sleep_steps": 50, "backend": "engine",
                    "biograd_rule": "exact"}
BIOGRAD_RUN_OPTIONS = ("data", "limit", "hidden", "batch", "steps", "error_start", "lr", "lr_decay", "seed", "no_sleep",
                       "sleep_batch", "sleep_steps", "backend", "precision", "biograd_rule")
PERTURB_DEFAULTS = {"task": "mexican-hat", "mode": "layerwise", "grad": "surrogate", "backend": "engine", "seed": 0}
PERTURB_RUN_OPTIONS = (*PERTURB_DEFAULTS, "precision", "limit", "hidden", "lr", "batch", "input_lr_scale", "directions",
                       "per_sample", "perturb_rule")


def _given(args: argparse.Namespace, options) -> list[str]:
    """The options of ``options`` (dest names) set on the command line: their defaults are None
    (or False for flags), so a value equal to the documented default still counts as given."""
    return [_flag(d) for d in options
            if getattr(args, d) is not None and getattr(args, d) is not False]  # `is`: --seed 0 counts


def _flag(dest: str) -> str:
    """The command-line option of an argparse dest name."""
    return "--rule" if dest in ("biograd_rule", "perturb_rule") else f"--{dest.replace('_', '-')}"


def _fill_defaults(args: argparse.Namespace, defaults: dict) -> None:
    for dest, value in defaults.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)


def _log(line: str) -> None:
    """Progress goes to stderr, so that stdout holds only the final JSON (``| jq`` works)."""
    print(line, file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> int:
    try:
        return _train(args)
    except KeyboardInterrupt:
        from lavasnn.train.runs import CHECKPOINT

        run = args.resume or args.out
        if run and os.path.exists(os.path.join(run, CHECKPOINT)):
            print(f"lavasnn: interrupted; the last finished epoch is saved in {run}: continue with --resume {run}",
                  file=sys.stderr)
        else:
            print("lavasnn: interrupted before the first epoch finished; nothing was saved", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace) -> int:
    if args.resume is not None and args.out is not None:
        raise UserError("--resume DIR continues the run in DIR; leave out --out")
    if args.rule == "perturb":
        from lavasnn.train.perturb import train_perturb

        if args.resume is None and args.out is None:
            raise UserError("--out DIR is required (or --resume DIR to continue a run)")
        overrides = {k: v for k, v in (("lr", args.lr), ("batch", args.batch), ("input_lr_scale", args.input_lr_scale),
                                        ("directions", args.directions), ("rule", args.perturb_rule),
                                        ("per_sample", args.per_sample or None)) if v is not None}
        given = _given(args, PERTURB_RUN_OPTIONS) if args.resume is not None else []
        if given:
            raise UserError(f"{', '.join(given)} set up a new run; a resumed run keeps its own "
                            "(only --epochs may change)")
        _fill_defaults(args, PERTURB_DEFAULTS)
        metrics = train_perturb(args.task, args.mode, args.grad, args.backend, args.out,
                                args.epochs, args.seed, resume=args.resume, progress=not args.no_progress,
                                precision=args.precision, limit=args.limit, overrides=overrides,
                                hidden=tuple(args.hidden) if args.hidden else None, log=_log)
        print(json.dumps(metrics))
        return 0

    from lavasnn.learning.biograd import BioGradConfig
    from lavasnn.train.biograd import train_biograd

    if args.resume:
        given = _given(args, BIOGRAD_RUN_OPTIONS)
        if given:
            raise UserError(f"{', '.join(given)} set up a new run; a resumed run keeps its own "
                            "(only --epochs and --device may change)")
        metrics = train_biograd(resume=args.resume, device=args.device, progress=not args.no_progress, log=_log,
                                epochs=args.epochs)
    else:
        if args.out is None:
            raise UserError("--out DIR is required (or --resume DIR to continue a run)")
        _fill_defaults(args, BIOGRAD_DEFAULTS)
        exact_engine = args.backend == "engine" and args.biograd_rule == "exact"
        precision = args.precision or ("float" if exact_engine else "fixed")
        cfg = BioGradConfig(hidden=tuple(args.hidden), steps=args.steps, error_start=args.error_start
                            if args.error_start is not None else round(0.32 * args.steps),
                            epochs=args.epochs,
                            batch=args.batch, seed=args.seed, sleep=not args.no_sleep, lr=args.lr,
                            lr_decay=args.lr_decay,
                            sleep_batch=args.sleep_batch, sleep_steps=args.sleep_steps, precision=precision,
                            rule=args.biograd_rule)
        metrics = train_biograd(cfg, args.data, args.out, backend=args.backend, device=args.device,
                                limit=args.limit, progress=not args.no_progress, log=_log)
    print(json.dumps(metrics))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like every other lavasnn error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lavasnn", description=__doc__.splitlines()[0])
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
    p.add_argument("what", choices=["neurons", "loihi2", "biograd", "perturb"],
                   help="neurons: MC-LIF, trace synapses, error neurons; loihi2: the learning-engine trace "
                        "variant; biograd: on-chip BioGrad training (final weights); perturb: on-chip "
                        "forward-gradient training (final weights)")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="neurons / loihi2: time steps (default 50; biograd and perturb run their own schedules)")
    p.add_argument("--samples", type=_positive_int, default=None,
                   help="biograd / perturb: training samples (default 8 / 24)")
    p.add_argument("--mode", choices=["global", "layerwise", "activity", "weight"], default=None,
                   help="perturb only (default layerwise)")
    p.add_argument("--grad", choices=["surrogate", "stein"], default=None,
                   help="perturb only: the spike's derivative, surrogate table (default) or Stein's estimate")
    p.add_argument("--directions", type=_positive_int, default=None,
                   help="perturb only: independent draws per update (default 1; not with --mode weight)")
    p.add_argument("--rule", dest="perturb_rule", choices=["exact", "loihi2"], default=None,
                   help="perturb only: exact (default) or loihi2, every weight change made by Lava's own "
                        "LearningDense (--mode weight, global or layerwise)")
    p.add_argument("--precision", choices=["fixed", "float"], default=None, help="biograd only (default fixed)")
    p.add_argument("--no-sleep", action="store_true", help="biograd only")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--json", action="store_true",
                   help="print JSON (keys: steps, spike_mismatches, state_mismatches, max_abs_state_diff, ..., "
                        "exercised: whether the run had spikes and weight changes to compare)")
    p.set_defaults(func=cmd_crosscheck)

    train = sub.add_parser("train", help="train a network with an on-chip learning rule")
    rules = train.add_subparsers(dest="rule", metavar="RULE")
    rules.required = True
    p = rules.add_parser("biograd", help="BioGrad (Tang et al. 2021): eligibility traces, error feedback, sleep")
    p.add_argument("--data", default=None,
                   help="mnist5k | digits | mnist:DIR | nmnist:DIR | nmnist-sim | npz:FILE (default mnist5k)")
    p.add_argument("--limit", type=_positive_int, default=None,
                   help="at most this many samples per split, classes balanced (quick runs, lava-sim)")
    p.add_argument("--hidden", type=_int_list, default=None, help="hidden sizes, e.g. 500,100 (default 500,100)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help=f"default {BIOGRAD_EPOCHS}, the budget of bench/bench_biograd.py")
    p.add_argument("--batch", type=_positive_int, default=None,
                   help="samples per weight update and sleep phase (default 32; 128 with --rule loihi2)")
    p.add_argument("--steps", type=_positive_int, default=None, help="time steps per sample (default 50)")
    p.add_argument("--error-start", type=int, default=None, help="first step of error feedback (default 0.32 T)")
    p.add_argument("--lr", type=_positive_float, default=None, help="default 1e-3")
    p.add_argument("--lr-decay", type=float, default=None,
                   help="per-epoch lr factor in (0, 1]: epoch e (from 0) uses lr * lr_decay^e "
                        "(engine backend, rule exact; default 1: constant lr)")
    p.add_argument("--seed", type=_seed, default=None, help="default 0")
    p.add_argument("--no-sleep", action="store_true", help="skip the sleep phase (feedback weights stay fixed)")
    p.add_argument("--sleep-batch", type=_positive_int, default=None, help="noise samples per sleep phase (default 128)")
    p.add_argument("--sleep-steps", type=_positive_int, default=None, help="time steps per sleep sample (default 50)")
    p.add_argument("--backend", choices=["engine", "lava-sim"], default=None, help="default engine")
    p.add_argument("--precision", choices=["fixed", "float"], default=None,
                   help="default: float for engine with --rule exact, else fixed")
    p.add_argument("--rule", dest="biograd_rule", choices=["exact", "loihi2"], default=None,
                   help="exact (default): BioGrad's traces and update; loihi2: the update Loihi 2's learning engine "
                        "can run (fixed point, engine backend)")
    p.add_argument("--device", default="cpu", help="engine only: cpu or cuda")
    p.add_argument("--out", help="run folder for metrics.json, history.json, checkpoint.h5")
    p.add_argument("--resume", help="continue the run in this folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = rules.add_parser("perturb", help="randomized forward-mode gradients (Wan, Zhang, Karniadakis 2024)")
    p.add_argument("--task", default=None, help="mexican-hat | poisson | reaction-diffusion | npz:FILE (default mexican-hat)")
    p.add_argument("--mode", choices=["global", "layerwise", "activity", "weight", "bp"], default=None,
                   help="default layerwise; activity: layer-wise perturbation of the neurons instead of the weights "
                        "(beyond the paper)")
    p.add_argument("--grad", choices=["surrogate", "stein"], default=None, help="default surrogate")
    p.add_argument("--backend", choices=["engine", "lava-sim"], default=None, help="default engine")
    p.add_argument("--precision", choices=["float", "fixed"], default=None,
                   help="fixed: the on-chip integer rule (default for lava-sim); float: engine only (default)")
    p.add_argument("--limit", type=_positive_int, default=None,
                   help="fixed point: train on a random subset of this many samples (lava-sim default 400)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="default: the task's")
    p.add_argument("--lr", type=_positive_float, default=None, help="default: the task's for this mode")
    p.add_argument("--batch", type=_positive_int, default=None, help="default: the task's")
    p.add_argument("--input-lr-scale", type=_positive_float, default=None,
                   help="lr factor for the layers fed by the data (default: the task's for this mode)")
    p.add_argument("--directions", type=_positive_int, default=None,
                   help="forward-gradient modes: average this many independent estimates per step, at this many "
                        "times the step's forward-mode work (on chip: tangent compartments per direction; "
                        "default 1, the paper's rule)")
    p.add_argument("--per-sample", action="store_true",
                   help="global and layerwise, float engine: one weight direction per sample (operators: per "
                        "function for the branch, per point for a trunk) instead of one per batch, the same "
                        "products plus one sum per weight and sample (beyond the paper)")
    p.add_argument("--rule", dest="perturb_rule", choices=["exact", "loihi2"], default=None,
                   help="fixed point: exact (default; synapses with their own random directions) or loihi2 "
                        "(--mode weight, global or layerwise: every weight change made by Lava's LearningDense, the "
                        "host writing each batch's direction into the tags)")
    p.add_argument("--hidden", type=_int_list, default=None,
                   help="hidden layer widths, e.g. 64,64 (operators: of the branch and every trunk); default: "
                        "the task's (Mexican hat 128,128 in float, 32,32 on chip; other tasks 32,32)")
    p.add_argument("--seed", type=_seed, default=None, help="default 0")
    p.add_argument("--out", help="run folder for metrics.json, the loss curve, plots and checkpoint.h5")
    p.add_argument("--resume", help="continue the run in this folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"{value} must be an integer in [0, 2^32 - 1]")
    return value


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} must list positive integers, e.g. 500,100")
    return values


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{value} must be a positive finite number")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"lavasnn: error: {e}", file=sys.stderr)
        return 2
    except LavaProcessError as e:  # a bug, not bad input: the failed process's traceback helps report it
        print(f"{e.worker_traceback}lavasnn: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lavasnn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
