"""Signal regions, sidebands and sliding windows: edges and empty regions."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyhunt.analysis.regions import Regions, parse_window, sliding_windows
from anomalyhunt.errors import ConfigError, InputError


def test_sr_and_sideband_edges() -> None:
    m = np.array([3.0, 3.0999, 3.1, 3.2999, 3.3, 3.5, 3.6999, 3.7, 3.8999, 3.9, 5.0])
    r = Regions()  # 3.3-3.7 TeV, sidebands = every other mass
    assert r.sr == (3.3, 3.7)
    np.testing.assert_array_equal(r.sr_mask(m), [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(r.sb_mask(m), [1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1])
    narrow = Regions(sideband_width=0.2)  # [3.1, 3.3) and [3.7, 3.9)
    np.testing.assert_array_equal(narrow.sb_mask(m), [0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0])
    scanned = Regions(scan=(3.05, 4.0))
    np.testing.assert_array_equal(scanned.sb_mask(m), [0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0])
    # SR and sidebands never share an event.
    for reg in (r, narrow, scanned):
        assert not (reg.sr_mask(m) & reg.sb_mask(m)).any()


def test_empty_region_names_the_region() -> None:
    m = np.array([2.0, 2.5, 4.5])
    with pytest.raises(InputError, match=r"SR 3.3-3.7 TeV"):
        Regions().select_sr(m, "data.h5")
    with pytest.raises(InputError, match=r"data.h5: no events in the sidebands of the SR 2-2.6 TeV"):
        Regions((2.0, 2.6), sideband_width=0.1).select_sb(m, "data.h5")
    assert Regions((2.0, 2.6)).select_sr(m).sum() == 2


def test_bad_region_configs() -> None:
    with pytest.raises(ConfigError, match="lo < hi"):
        Regions((3.7, 3.3))
    with pytest.raises(ConfigError, match="sideband_width"):
        Regions(sideband_width=0.0)
    with pytest.raises(ConfigError, match="does not contain"):
        Regions(scan=(3.4, 5.0))
    assert parse_window("3.3:3.7") == (3.3, 3.7)
    for bad in ("3.3-3.7", "3.7:3.3", "a:b"):
        with pytest.raises(ConfigError):
            parse_window(bad)


def test_sliding_windows() -> None:
    w = sliding_windows(3.0, 4.0, 0.4, 0.1)
    assert len(w) == 7 and w[0] == (3.0, 3.4) and w[-1] == (3.6, 4.0)
    # 0.1 steps accumulate float error; the last window that fits must not be lost or overshoot.
    w = sliding_windows(2.5, 5.0, 0.4, 0.2)
    assert len(w) == 11 and w[-1] == (4.5, 4.9)
    assert all(hi - lo == pytest.approx(0.4) for lo, hi in w)
    assert sliding_windows(3.3, 3.7, 0.4, 0.1) == [(3.3, 3.7)]
    with pytest.raises(ConfigError, match="does not fit"):
        sliding_windows(3.0, 3.2, 0.4, 0.1)
    with pytest.raises(ConfigError, match="step > 0"):
        sliding_windows(3.0, 4.0, 0.4, 0.0)
