"""Pricing rules: per second by hardware, per invocation, minimums, and what is free."""

from decimal import Decimal

import pytest

from server.metering.pricing import charge
from server.settings import MeteringSettings

SETTINGS = MeteringSettings(
    prices_per_second={"cpu": Decimal("0.0001"), "gpu-a100": Decimal("0.0014")},
    price_per_invocation={"acme/flat": Decimal("0.002"), "acme/dep": Decimal("0.005")},
    minimum_billed_seconds=Decimal("0.1"),
)


def cost(**kwargs: object) -> tuple[str, str, str, str]:
    facts: dict[str, object] = {
        "status": "succeeded",
        "started": True,
        "predict_time": 2.5,
        "hardware": "cpu",
        "model": "acme/echo",
        "deployment": None,
        "settings": SETTINGS,
    }
    facts.update(kwargs)
    c = charge(**facts)  # type: ignore[arg-type]
    return str(c.billed_units), c.unit, str(c.cost), c.pricing_mode


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({}, ("2.500", "second", "0.00025000", "per_second")),
        ({"hardware": "gpu-a100"}, ("2.500", "second", "0.00350000", "per_second")),
        ({"hardware": "gpu-unknown"}, ("2.500", "second", "0.00025000", "per_second")),
        ({"predict_time": 0.004}, ("0.1", "second", "0.00001000", "per_second")),  # minimum
        (
            {"status": "failed", "predict_time": 1.0},
            ("1.000", "second", "0.00010000", "per_second"),
        ),
        ({"status": "canceled", "started": False}, ("0", "second", "0", "per_second")),
        ({"status": "failed", "started": False}, ("0", "second", "0", "per_second")),
        (
            {"status": "canceled", "predict_time": 0.7},
            ("0.700", "second", "0.00007000", "per_second"),
        ),
        ({"model": "acme/flat"}, ("1", "invocation", "0.00200000", "per_invocation")),
        (
            {"model": "acme/flat", "deployment": "acme/dep"},
            ("1", "invocation", "0.00500000", "per_invocation"),
        ),
        (
            {"model": "acme/flat", "status": "failed", "predict_time": 3.0},
            ("3.000", "second", "0.00030000", "per_second"),
        ),
    ],
    ids=[
        "cpu",
        "gpu",
        "unknown-sku-at-cpu-price",
        "minimum",
        "failed-billed-for-time",
        "canceled-before-start-free",
        "failed-before-start-free",
        "canceled-while-running",
        "per-invocation",
        "deployment-price-wins",
        "failed-per-invocation-billed-for-time",
    ],
)
def test_charges(facts: dict[str, object], expected: tuple[str, str, str, str]) -> None:
    got = cost(**facts)
    assert (got[0], got[1], got[3]) == (expected[0], expected[1], expected[3])
    assert Decimal(got[2]) == Decimal(expected[2])
