"""What a prediction costs. Pure functions of the prediction's facts and the price settings.

- Per second (the default): billed units = predict seconds, at least the minimum when the
  prediction ran at all, times the hardware SKU's per-second price.
- Per invocation: a model or deployment with a configured invocation price (the deployment's
  wins) costs that price for each *succeeded* prediction.
- Failed predictions (and failed or canceled per-invocation ones) are billed per second for the
  time they used; a prediction canceled or failed before it started costs zero.
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from server.settings import MeteringSettings

COST_QUANTUM = Decimal("0.00000001")  # costs are kept to 1e-8 of the currency
SECONDS_QUANTUM = Decimal("0.001")  # billed seconds are kept to the millisecond


@dataclass(frozen=True)
class Charge:
    billed_units: Decimal
    unit: str
    unit_price: Decimal
    cost: Decimal
    pricing_mode: str


def charge(
    *,
    status: str,
    started: bool,
    predict_time: float,
    hardware: str,
    model: str,
    deployment: str | None,
    settings: MeteringSettings,
) -> Charge:
    invocation = settings.price_per_invocation
    per_call = invocation.get(deployment or "") or invocation.get(model)
    if per_call is not None and status == "succeeded":
        return Charge(Decimal(1), "invocation", per_call, _money(per_call), "per_invocation")
    prices = settings.prices_per_second
    unit_price = prices.get(hardware, prices.get("cpu", Decimal(0)))
    if not started:
        seconds = Decimal(0)
    else:
        used = Decimal(str(max(predict_time, 0.0))).quantize(SECONDS_QUANTUM, ROUND_HALF_UP)
        seconds = max(used, settings.minimum_billed_seconds)
    return Charge(seconds, "second", unit_price, _money(seconds * unit_price), "per_second")


def _money(value: Decimal) -> Decimal:
    return value.quantize(COST_QUANTUM, ROUND_HALF_UP)
