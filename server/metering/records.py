"""Build the usage record of a terminal prediction (the row the outbox ships), as data: the
``Insert`` commits with the terminal status (``server.dbwrite``; no ORM object per record)."""

import random
from datetime import datetime
from typing import Any

from sqlalchemy import Table

from server.clock import isoformat
from server.dbwrite import Insert
from server.metering.pricing import charge
from server.metering.tables import UsageRow
from server.settings import MeteringSettings

USAGE: Table = UsageRow.__table__  # type: ignore[assignment]

# Record ids must be unique, not secret: 128 bits from a PRNG seeded by the OS, no system call
# per record (uuid4 reads os.urandom each time).
_record_ids = random.Random()


def usage_row(
    *,
    prediction_id: str,
    account: str,
    model: str,
    version: str,
    deployment: str | None,
    hardware: str,
    status: str,
    created_at: datetime,
    started_at: datetime | None,
    completed_at: datetime,
    predict_time: float,
    settings: MeteringSettings,
) -> Insert:
    price = charge(
        status=status,
        started=started_at is not None,
        predict_time=predict_time,
        hardware=hardware,
        model=model,
        deployment=deployment,
        settings=settings,
    )
    queue_end = started_at or completed_at
    record: dict[str, Any] = {
        "record_id": f"{_record_ids.getrandbits(128):032x}",
        "prediction_id": prediction_id,
        "account": account,
        "model": model,
        "version": version,
        "deployment": deployment,
        "hardware": hardware,
        "status": status,
        "created_at": isoformat(created_at),
        "started_at": isoformat(started_at),
        "completed_at": isoformat(completed_at),
        "queue_time": round((queue_end - created_at).total_seconds(), 6),
        "predict_time": round(predict_time if started_at else 0.0, 6),
        "total_time": round((completed_at - created_at).total_seconds(), 6),
        "billed_units": f"{price.billed_units:f}",
        "unit": price.unit,
        "unit_price": f"{price.unit_price:f}",
        "cost": f"{price.cost:f}",
        "currency": settings.currency,
        "pricing_mode": price.pricing_mode,
        "gateway_id": settings.gateway_id,
    }
    values = {
        "record_id": record["record_id"],
        "prediction_id": prediction_id,
        "completed_at": completed_at,
        "record": record,
    }
    return Insert(USAGE, values)
