"""NAB's scoring rules as implemented in bench/nab_scoring.py."""

from __future__ import annotations

import numpy as np
import pytest

from bench.nab_scoring import MAX_TP, normalised, probation_rows, score_series, scaled_sigmoid

W = dict(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)


def test_sigmoid_shape():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-4)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.5) == -1.0


def test_detection_at_window_start_is_perfect_and_only_the_first_counts():
    s = score_series(np.array([2000, 2001, 2050]), [(2000, 2099)], 4000, **W)
    assert s.raw == pytest.approx(1.0) and s.tp == 1 and s.fp == 0


def test_late_detection_scores_less_and_a_miss_costs_fn_weight():
    late = score_series(np.array([2090]), [(2000, 2099)], 4000, **W)
    assert 0 < late.raw < 0.5
    miss = score_series(np.array([]), [(2000, 2099)], 4000, **W)
    assert miss.raw == -1.0 and miss.fn == 1


def test_false_positives_cost_fp_weight_and_probation_is_ignored():
    n = 4000
    s = score_series(np.array([probation_rows(n) - 1, 1000]), [(2000, 2099)], n, **W)
    assert s.fp == 1 and s.raw == pytest.approx(-0.11 - 1.0)
    just_after = score_series(np.array([2000, 2101]), [(2000, 2099)], n, **W)
    assert -0.11 < just_after.raw - 1.0 < 0


def test_normalisation_against_null_and_perfect():
    perfect = score_series(np.array([2000]), [(2000, 2099)], 4000, **W)
    null = score_series(np.array([]), [(2000, 2099)], 4000, **W)
    assert normalised([perfect]) == pytest.approx(100.0)
    assert normalised([null]) == pytest.approx(0.0)
    assert MAX_TP < 1
