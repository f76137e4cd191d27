"""The quickstart predictor: greets whoever you name. Fast to boot, no model weights."""

import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.greeting = "hello"

    def predict(
        self,
        text: str = Input(description="Who to greet", default="world"),
        repeat: int = Input(description="How many times", default=1, ge=1, le=10),
        seconds: float = Input(
            description="Think this long first (try cancelling)", default=0.0, ge=0.0, le=60.0
        ),
    ) -> str:
        print(f"greeting {text} x{repeat}")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # short sleeps, so a cancel lands at once
            time.sleep(0.05)
        return " ".join([f"{self.greeting} {text}"] * repeat)
