"""Chip and GPU profiles, loaded from ``chips/*.toml`` into typed, immutable objects.

Every hardware figure the toolkit uses lives in a TOML file as a *quantity*::

    synaptic_op = { value = 23.6, unit = "pJ", source = "davies2018", basis = "simulated",
                    note = "Table 2, energy per synaptic spike op (min)" }

``source`` names an entry of the file's ``[sources]`` table (the paper or datasheet),
``basis`` says how the figure was obtained (see :data:`BASES`), and optional ``low`` /
``high`` bound its uncertainty. Each field of each section has a physical dimension; a unit
of another dimension, a missing required field, an unknown field or a negative value is a
:class:`ProfileError` that names the file and the field.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import tomli

from lavasnn.errors import UserError

BASES = ("specified", "measured", "simulated", "calibrated", "derived")
"""specified: a documented design parameter; measured: read off silicon or a board;
simulated: pre-silicon circuit simulation; calibrated: fitted to workload measurements;
derived: computed from other figures (the note says how)."""

# unit -> (dimension, factor to the dimension's SI base unit)
UNITS: Mapping[str, tuple[str, float]] = MappingProxyType({
    "count": ("count", 1.0),
    "bit": ("bits", 1.0),
    "B": ("bytes", 1.0), "KiB": ("bytes", 2.0**10), "MiB": ("bytes", 2.0**20),
    "GiB": ("bytes", 2.0**30), "KB": ("bytes", 1e3), "MB": ("bytes", 1e6), "GB": ("bytes", 1e9),
    "fJ": ("energy", 1e-15), "pJ": ("energy", 1e-12), "nJ": ("energy", 1e-9),
    "uJ": ("energy", 1e-6), "mJ": ("energy", 1e-3), "J": ("energy", 1.0),
    "ps": ("time", 1e-12), "ns": ("time", 1e-9), "us": ("time", 1e-6),
    "ms": ("time", 1e-3), "s": ("time", 1.0),
    "uW": ("power", 1e-6), "mW": ("power", 1e-3), "W": ("power", 1.0),
    "mm2": ("area", 1e-6),
    "GB/s": ("bandwidth", 1e9), "TB/s": ("bandwidth", 1e12),
    "GFLOP/s": ("flops", 1e9), "TFLOP/s": ("flops", 1e12),
})

# kind -> section -> field -> (dimension, required)
SCHEMA: Mapping[str, Mapping[str, Mapping[str, tuple[str, bool]]]] = MappingProxyType({
    "neuromorphic": {
        "resources": {
            "cores_per_chip": ("count", True),
            "cores_per_tile": ("count", True),
            "neurons_per_core": ("count", True),
            "neurons_per_chip": ("count", True),
            "synapses_per_chip": ("count", True),
            "synaptic_memory_per_core": ("bytes", True),
            "weight_bits": ("bits", True),
            "fan_in_axons_per_core": ("count", False),
            "fan_out_axons_per_core": ("count", False),
            "die_area": ("area", False),
        },
        "energy": {
            "synaptic_op": ("energy", True),
            "synaptic_update": ("energy", True),
            "neuron_update_active": ("energy", True),
            "neuron_update_inactive": ("energy", True),
            "spike_within_tile": ("energy", True),
            "tile_hop_ew": ("energy", True),
            "tile_hop_ns": ("energy", True),
            "static_power": ("power", False),
        },
        "time": {
            "synaptic_op": ("time", True),
            "synaptic_update": ("time", True),
            "neuron_update_active": ("time", True),
            "neuron_update_inactive": ("time", True),
            "spike_within_tile": ("time", True),
            "tile_hop_ew": ("time", True),
            "tile_hop_ns": ("time", True),
            "barrier_sync": ("time", True),
        },
    },
    "gpu": {
        "resources": {
            "memory": ("bytes", True),
            "memory_bandwidth": ("bandwidth", True),
            "fp32_peak": ("flops", True),
            "bf16_tensor_peak": ("flops", False),
            "tdp": ("power", True),
            "idle_power": ("power", False),
        },
    },
})

# Figures shown by `lavasnn info` for each kind.
SUMMARY_FIELDS = MappingProxyType({
    "neuromorphic": ("cores_per_chip", "neurons_per_core", "neurons_per_chip",
                     "synaptic_memory_per_core", "weight_bits"),
    "gpu": ("memory", "memory_bandwidth", "fp32_peak", "tdp"),
})

SCHEMA_VERSION = 1


class ProfileError(UserError):
    """A chip profile file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Quantity:
    """One hardware figure with its provenance. ``si`` is ``value`` in SI base units."""

    value: float
    unit: str
    source: str
    basis: str
    note: str = ""
    low: float | None = None
    high: float | None = None

    @property
    def dimension(self) -> str:
        return UNITS[self.unit][0]

    @property
    def si(self) -> float:
        return self.value * UNITS[self.unit][1]

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"


@dataclass(frozen=True)
class ChipProfile:
    """A chip or GPU: its sources and its figures, grouped in sections."""

    name: str
    kind: str
    title: str
    path: Path
    sources: Mapping[str, str]
    sections: Mapping[str, Mapping[str, Quantity]] = field(repr=False)

    @property
    def resources(self) -> Mapping[str, Quantity]:
        return self.sections["resources"]

    @property
    def energy(self) -> Mapping[str, Quantity]:
        return self.sections.get("energy", MappingProxyType({}))

    @property
    def time(self) -> Mapping[str, Quantity]:
        return self.sections.get("time", MappingProxyType({}))

    def summary(self) -> dict:
        """Key figures as JSON-ready data: {kind, title, file, <field>: {value, unit, basis}}."""
        out: dict = {"kind": self.kind, "title": self.title, "file": str(self.path)}
        for name in SUMMARY_FIELDS[self.kind]:
            q = self.resources.get(name)
            if q is not None:
                out[name] = {"value": q.value, "unit": q.unit, "basis": q.basis}
        bases = sorted({q.basis for sec in self.sections.values() for q in sec.values()})
        out["bases"] = bases
        return out


def default_chips_dir() -> Path:
    """``$LAVASNN_CHIPS_DIR`` if set, else the ``chips/`` folder of the source tree."""
    env = os.environ.get("LAVASNN_CHIPS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "chips"


def _fail(path: Path, where: str, msg: str) -> ProfileError:
    return ProfileError(f"{path}: {where}: {msg}")


def _number(path: Path, where: str, raw, allow_none: bool = False) -> float | None:
    if raw is None and allow_none:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise _fail(path, where, f"must be a number, got {raw!r}")
    if not math.isfinite(raw):
        raise _fail(path, where, f"must be finite, got {raw!r}")
    if raw < 0:
        raise _fail(path, where, f"must not be negative, got {raw!r}")
    return float(raw)


def _quantity(path: Path, where: str, raw, dimension: str, sources: Mapping[str, str]) -> Quantity:
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be a table {value, unit, source, basis}")
    unknown = set(raw) - {"value", "unit", "source", "basis", "note", "low", "high"}
    if unknown:
        raise _fail(path, where, f"unknown keys {sorted(unknown)}; allowed: value, unit, source, basis, note, low, high")
    for key in ("value", "unit", "source", "basis"):
        if key not in raw:
            raise _fail(path, where, f"missing '{key}'")
    for key in ("unit", "source", "basis"):
        if not isinstance(raw[key], str):
            raise _fail(path, f"{where}.{key}", f"must be a string, got {raw[key]!r}")
    unit = raw["unit"]
    allowed = [u for u, (d, _) in UNITS.items() if d == dimension]
    if unit not in UNITS or UNITS[unit][0] != dimension:
        raise _fail(path, where, f"unit {unit!r} is not a unit of {dimension} (allowed: {', '.join(allowed)})")
    if raw["source"] not in sources:
        raise _fail(path, where, f"source {raw['source']!r} is not in [sources] (have: {', '.join(sorted(sources)) or 'none'})")
    if raw["basis"] not in BASES:
        raise _fail(path, where, f"basis {raw['basis']!r} is not one of {', '.join(BASES)}")
    value = _number(path, f"{where}.value", raw["value"])
    low = _number(path, f"{where}.low", raw.get("low"), allow_none=True)
    high = _number(path, f"{where}.high", raw.get("high"), allow_none=True)
    if (low is not None and low > value) or (high is not None and high < value):
        raise _fail(path, where, f"value {value:g} lies outside its range [{low}, {high}]")
    return Quantity(value, unit, raw["source"], raw["basis"], str(raw.get("note", "")), low, high)


def load_profile(path: str | Path) -> ChipProfile:
    """Read and validate one profile file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            doc = tomli.load(f)
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such chip profile") from None
    except IsADirectoryError:
        raise ProfileError(f"{path}: is a folder, not a chip profile file") from None
    except (tomli.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ProfileError(f"{path}: not valid TOML (UTF-8 text): {e}") from None
    except OSError as e:
        raise ProfileError(f"{path}: cannot be read: {e.strerror}") from None
    if doc.get("schema") != SCHEMA_VERSION:
        raise _fail(path, "schema", f"must be {SCHEMA_VERSION}, got {doc.get('schema')!r}")
    for key in ("name", "kind", "title"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise _fail(path, key, "missing or not a string")
    kind = doc["kind"]
    if kind not in SCHEMA:
        raise _fail(path, "kind", f"{kind!r} is not one of {', '.join(SCHEMA)}")
    sources = doc.get("sources")
    if not isinstance(sources, dict) or not sources:
        raise _fail(path, "sources", "missing: name each paper or datasheet the figures come from")
    for key, citation in sources.items():
        if not isinstance(citation, str) or not citation.strip():
            raise _fail(path, f"sources.{key}", f"must be the citation as text, got {citation!r}")
    extra = set(doc) - {"schema", "name", "kind", "title", "sources"} - set(SCHEMA[kind])
    if extra:
        raise _fail(path, sorted(extra)[0], f"unknown section for a {kind} profile (allowed: {', '.join(SCHEMA[kind])})")
    sections = {}
    for section, fields in SCHEMA[kind].items():
        table = doc.get(section)
        if not isinstance(table, dict):
            raise _fail(path, section, "missing section")
        unknown = set(table) - set(fields)
        if unknown:
            raise _fail(path, f"{section}.{sorted(unknown)[0]}", f"unknown field (allowed: {', '.join(fields)})")
        quantities = {}
        for name, (dimension, required) in fields.items():
            if name not in table:
                if required:
                    raise _fail(path, f"{section}.{name}", "missing required field")
                continue
            quantities[name] = _quantity(path, f"{section}.{name}", table[name], dimension, sources)
        sections[section] = MappingProxyType(quantities)
    return ChipProfile(doc["name"], kind, doc["title"], path, MappingProxyType(dict(sources)),
                       MappingProxyType(sections))


def load_all(directory: str | Path | None = None) -> dict[str, ChipProfile]:
    """All profiles of a folder, by name. Two files with one name are an error."""
    directory = Path(directory) if directory is not None else default_chips_dir()
    if not directory.is_dir():
        raise ProfileError(f"{directory}: chip profile folder not found (set LAVASNN_CHIPS_DIR)")
    profiles: dict[str, ChipProfile] = {}
    for path in sorted(directory.glob("*.toml")):
        profile = load_profile(path)
        if profile.name in profiles:
            raise _fail(path, "name", f"{profile.name!r} is already defined in {profiles[profile.name].path}")
        profiles[profile.name] = profile
    return profiles


def get_profile(name: str, directory: str | Path | None = None) -> ChipProfile:
    """One profile by name, e.g. ``get_profile("loihi2")``."""
    profiles = load_all(directory)
    if name not in profiles:
        raise ProfileError(f"unknown chip {name!r} (have: {', '.join(sorted(profiles))})")
    return profiles[name]
