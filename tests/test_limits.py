"""The Limits value object and the firm value of non-participants."""

import numpy as np
import pytest

from nfca.errors import InputError
from nfca.model.envelope import EnvelopeOptions, firm_kw
from nfca.model.limits import Limits, limit_excess
from nfca.model.network import EndUser


def test_voltage_limits_in_volts_apply_to_the_voltage_each_user_sees():
    lim = Limits(vmin_v=207, vmax_v=253)
    lo, hi = lim.voltage_bounds_pu(np.array([240.0, 230.0]))  # a 416 V grid's phase, a 3x230 V grid's phases
    assert lo == pytest.approx([207 / 240, 0.9]) and hi == pytest.approx([253 / 240, 1.1])
    lo, hi = Limits().voltage_bounds_pu(np.array([240.0]))
    assert (lo, hi) == (pytest.approx([0.9]), pytest.approx([1.1]))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(vmin_pu=1.0),
        dict(vmin_v=250, vmax_v=240),
        dict(vmax_v=float("nan")),
        dict(v_neutral_max_v=0.0),
        dict(v_margin_pu=0.5),
    ],
)
def test_bad_limits_are_refused(kwargs):
    with pytest.raises(InputError):
        Limits(**kwargs)


def test_limit_excess_is_the_fraction_of_the_limit_broken():
    x = limit_excess(
        np.array([0.88, 1.0, 1.12, 105.0]), np.array([0.9, 0.9, 0.9, 0.0]), np.array([1.1, 1.1, 1.1, 100.0])
    )
    assert x == pytest.approx([0.02 / 0.9, -0.1 / 1.1, 0.02 / 1.1, 0.05])


def test_firm_value_follows_the_user_then_the_study_rule():
    u = EndUser("u", "b", ((1, 0),), "wye", 9.2)
    assert firm_kw(u, EnvelopeOptions()) == pytest.approx(9.2)
    assert firm_kw(u, EnvelopeOptions(firm_diversity=0.3, power_factor=0.95)) == pytest.approx(0.3 * 9.2 * 0.95)
    assert firm_kw(u, EnvelopeOptions(firm_kw=2.0)) == pytest.approx(2.0)
    assert firm_kw(EndUser("v", "b", ((1, 0),), "wye", 9.2, firm_kw=1.5), EnvelopeOptions(firm_kw=2.0)) == 1.5
    with pytest.raises(InputError):
        EnvelopeOptions(firm_diversity=1.5)
