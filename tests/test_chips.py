import shutil

import pytest

from lavasnn.chips import BASES, ProfileError, get_profile, load_all, load_profile


def test_shipped_profiles_load_with_davies_table2_figures(chips_dir):
    profiles = load_all(chips_dir)
    assert {"loihi1", "loihi2"} <= set(profiles)
    assert {p.kind for p in profiles.values()} == {"neuromorphic", "gpu"}
    l1 = profiles["loihi1"]
    assert l1.energy["synaptic_op"].value == 23.6
    assert l1.energy["synaptic_op"].si == pytest.approx(23.6e-12)
    assert l1.energy["synaptic_op"].basis == "simulated"
    assert l1.time["neuron_update_active"].si == pytest.approx(8.4e-9)
    assert l1.resources["synaptic_memory_per_core"].si == 128 * 1024
    assert l1.resources["cores_per_chip"].value == 128
    assert "Davies" in l1.sources[l1.energy["synaptic_op"].source]


def test_every_figure_has_known_basis_and_a_named_source(chips_dir):
    for p in load_all(chips_dir).values():
        for section in p.sections.values():
            for q in section.values():
                assert q.basis in BASES
                assert q.source in p.sources


def test_loihi2_energies_are_derived_with_an_uncertainty_range(chips_dir):
    l2 = get_profile("loihi2", chips_dir)
    for q in list(l2.energy.values()) + list(l2.time.values()):
        assert q.basis == "derived"
        assert q.low is not None and q.high is not None and q.low <= q.value <= q.high


def test_profiles_are_immutable(chips_dir):
    l1 = get_profile("loihi1", chips_dir)
    with pytest.raises(TypeError):
        l1.energy["synaptic_op"] = None
    with pytest.raises(AttributeError):
        l1.energy["synaptic_op"].value = 0


def _broken(tmp_path, chips_dir, old, new, name="loihi1.toml"):
    text = (chips_dir / name).read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old,new,expected", [
    ('synaptic_op = { value = 23.6, unit = "pJ"', 'synaptic_op = { value = 23.6, unit = "ms"',
     "energy.synaptic_op: unit 'ms' is not a unit of energy"),
    ('synaptic_op = { value = 23.6,', 'synaptic_op = { value = -23.6,', "energy.synaptic_op.value: must not be negative"),
    ('basis = "simulated", note = "Table 2, energy per synaptic spike op (min)"',
     'basis = "guessed", note = ""', "basis 'guessed' is not one of"),
    ('source = "davies2018", basis = "simulated", note = "Table 2, energy per synaptic update',
     'source = "nobody", basis = "simulated", note = "Table 2, energy per synaptic update',
     "source 'nobody' is not in [sources]"),
    ('kind = "neuromorphic"', 'kind = "quantum"', "kind: 'quantum' is not one of"),
    ('cores_per_chip = {', 'cores_per_chipp = {', "resources.cores_per_chipp: unknown field"),
    ('value = 23.6,', 'value = "many",', "must be a number"),
    ('schema = 1', 'schema = 7', "schema: must be 1"),
    ('unit = "pJ"', 'unit = ["pJ"]', "unit: must be a string"),
    ('source = "davies2018"', 'source = ["davies2018"]', "source: must be a string"),
    ('davies2018 = "', 'davies2018 = 5\nunused = "', "sources.davies2018: must be the citation as text"),
])
def test_broken_profiles_name_file_and_field(tmp_path, chips_dir, old, new, expected):
    path = _broken(tmp_path, chips_dir, old, new)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_missing_required_field(tmp_path, chips_dir):
    text = (chips_dir / "loihi1.toml").read_text()
    lines = [l for l in text.splitlines() if not l.startswith("tile_hop_ns")]
    path = tmp_path / "loihi1.toml"
    path.write_text("\n".join(lines))
    with pytest.raises(ProfileError, match=r"energy.tile_hop_ns: missing required field"):
        load_profile(path)


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="no such chip profile"):
        load_profile(tmp_path / "absent.toml")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(latin1)
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(ProfileError, match="is a folder"):
        load_profile(tmp_path / "folder.toml")


def test_duplicate_names_and_unknown_chip(tmp_path, chips_dir):
    shutil.copy(chips_dir / "loihi1.toml", tmp_path / "a.toml")
    shutil.copy(chips_dir / "loihi1.toml", tmp_path / "b.toml")
    with pytest.raises(ProfileError, match="already defined"):
        load_all(tmp_path)
    with pytest.raises(ProfileError, match="unknown chip 'loihi9'"):
        get_profile("loihi9", chips_dir)
