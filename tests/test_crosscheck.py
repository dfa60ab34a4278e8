"""Lava simulation and engine agree bit for bit; the check itself can fail."""

import dataclasses
import json

import numpy as np
import pytest

from lavasnn import crosscheck as cc
from lavasnn.cli import main

pytestmark = pytest.mark.lava


@pytest.mark.parametrize("seed", [0, 3])
def test_random_network_has_zero_mismatches_and_real_activity(seed):
    report = cc.crosscheck_neurons(steps_=25, seed=seed)
    assert report["spike_mismatches"] == 0
    assert report["state_mismatches"] == 0
    assert report["max_abs_state_diff"] == 0
    assert report["stock_lif_mismatches"] == 0  # soma == Lava's PyLifModelBitAcc
    assert report["activity"]["hid.s"] > 0 and report["activity"]["out.s"] > 0
    assert report["activity"]["err.s_pos"] + report["activity"]["err.s_neg"] > 0


def test_comparison_detects_a_one_unit_change():
    net = cc.random_net(30, 1)
    reference = cc.run_engine(net)
    assert np.abs(reference["w1.E"]).max() > 0 and np.abs(reference["hid.d"]).max() > 0
    changed = cc.run_engine(dataclasses.replace(net, trace_decay=net.trace_decay + 1))
    assert cc.compare(reference, changed)["state_mismatches"] > 0
    dendrite = cc.run_engine(dataclasses.replace(net, hid=dataclasses.replace(net.hid, dd=(net.hid.dd + 1) % 4096)))
    report = cc.compare(reference, dendrite)
    assert report["state_mismatches"] > 0 and report["spike_mismatches"] == 0  # the dendrite never drives the soma


def test_cli_crosscheck_json(capsys):
    assert main(["crosscheck", "neurons", "--steps", "15", "--seed", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 15
    for key in ("spike_mismatches", "state_mismatches", "max_abs_state_diff"):
        assert report[key] == 0
