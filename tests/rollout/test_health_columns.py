"""Health pools fed in batches of columns hold exactly what pools fed report by report hold."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeship.rollout import HealthMetrics
from edgeship.rollout.health import HealthPool, _exact, _exact_sum

finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(finite, max_size=200))
def test_exact_sum_of_a_column_is_the_sum_of_exact_values(values: list[float]) -> None:
    assert _exact_sum(np.array(values, dtype=float)) == sum(map(_exact, values))


def test_exact_sum_at_the_edges_of_the_float_range() -> None:
    edges = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-310, 1.7976931348623157e308, -1.7976931348623157e308, 0.5, 1.0]
    assert _exact_sum(np.array(edges * 1000)) == sum(map(_exact, edges * 1000))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(1e-3, 1e4), st.floats(-5, 5)), min_size=1, max_size=60), st.data())
def test_columns_in_and_out_match_reports_one_by_one(rows: list[tuple[float, float, float]], data: st.DataObject) -> None:
    gone = data.draw(st.lists(st.integers(0, len(rows) - 1), unique=True))
    by_column, by_report = HealthPool(), HealthPool()
    err, lat, out = (np.array(c, dtype=float) for c in zip(*rows))
    by_column.add_columns(err, lat, out)
    by_column.remove_columns(err[gone], lat[gone], out[gone])
    for e, l, o in rows:
        by_report.add(HealthMetrics(e, l, output_stat=o))
    for k in gone:
        by_report.remove(HealthMetrics(*rows[k][:2], output_stat=rows[k][2]))
    assert by_column.cohort() == by_report.cohort()
    assert by_column.devices == by_report.devices == len(rows) - len(gone)
