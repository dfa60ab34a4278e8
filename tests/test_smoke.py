import pytest

from lavasnn.backends import run_config
from lavasnn.backends.smoke import run_smoke
from lavasnn.errors import UserError

pytestmark = pytest.mark.lava


@pytest.mark.parametrize("precision", ["fixed", "float"])
def test_small_lif_network_spikes_in_loihi2simcfg(precision):
    spikes = run_smoke(precision, steps=30)
    assert spikes.shape == (2, 30)
    counts = spikes.sum(axis=1)
    # Both outputs fire, and not before the inputs' first spikes have crossed the Dense
    # connection, which delays by one step.
    assert (counts > 5).all()
    assert not spikes[:, :2].any()


def test_fixed_and_float_models_agree_on_the_smoke_network():
    assert (run_smoke("fixed", steps=40) == run_smoke("float", steps=40)).all()


def test_hw_backend_refused_with_reason():
    with pytest.raises(UserError, match="lava-loihi"):
        run_config("hw")
    with pytest.raises(UserError, match="precision"):
        run_config("sim", "double")
