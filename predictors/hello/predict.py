"""The quickstart predictor: greets whoever you name. Fast to boot, no model weights."""

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.greeting = "hello"

    def predict(
        self,
        text: str = Input(description="Who to greet", default="world"),
        repeat: int = Input(description="How many times", default=1, ge=1, le=10),
    ) -> str:
        print(f"greeting {text} x{repeat}")
        return " ".join([f"{self.greeting} {text}"] * repeat)
