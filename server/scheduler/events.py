"""What the scheduler reports about predictions; the predictions service implements it."""

from typing import Any, Protocol

from server.runtime.cog_client import CogResult


class PredictionEvents(Protocol):
    async def started(self, prediction_id: str) -> None:
        """predict() began on an instance."""
        ...

    async def progress(self, prediction_id: str, event: str, payload: dict[str, Any]) -> None:
        """A ``log`` or ``output`` event from Cog's stream."""
        ...

    async def completed(self, prediction_id: str, result: CogResult) -> None:
        """The prediction reached a terminal state (or failed to run at all)."""
        ...
