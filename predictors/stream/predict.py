"""Streaming text: a word-level Markov chain, trained in setup(), yields its words one by one.

setup() reads corpus.txt (the opening chapter of Alice's Adventures in Wonderland, public
domain) and counts which word follows each pair of words (with single words as a fallback).
predict() continues your prompt by sampling the next word from those counts with torch
(temperature-scaled, seeded), and yields each word as soon as it is chosen: the output is a
`ConcatenateIterator[str]`, so the tokens joined are the text. Runs on the GPU when one is
visible, else on the CPU.
"""

import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import torch
from cog import BasePredictor, ConcatenateIterator, Input

CORPUS = Path(__file__).resolve().parent / "corpus.txt"
SENTENCE_END = re.compile(r"[.!?][\"')]*$")

Table = dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]]


class Predictor(BasePredictor):
    def setup(self) -> None:
        began = time.monotonic()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        _, _, body = CORPUS.read_text().partition("\n\n")  # the first paragraph is a header
        self.words = body.split()
        self.vocab = sorted(set(self.words))
        ids = {word: i for i, word in enumerate(self.vocab)}
        keys = [word.lower() for word in self.words]
        pairs: defaultdict[tuple[str, ...], Counter[int]] = defaultdict(Counter)
        singles: defaultdict[tuple[str, ...], Counter[int]] = defaultdict(Counter)
        for i in range(2, len(self.words)):
            pairs[(keys[i - 2], keys[i - 1])][ids[self.words[i]]] += 1
        for i in range(1, len(self.words)):
            singles[(keys[i - 1],)][ids[self.words[i]]] += 1
        self.pairs = self._tensors(pairs.items())
        self.singles = self._tensors(singles.items())
        self.starts = [0] + [i + 1 for i, w in enumerate(self.words[:-2]) if SENTENCE_END.search(w)]
        print(
            f"trained an order-2 Markov chain on {len(self.words)} words "
            f"({len(self.vocab)} distinct, {len(self.pairs)} states) on {self.device} "
            f"in {time.monotonic() - began:.2f}s"
        )

    def _tensors(self, items: Iterable[tuple[tuple[str, ...], Counter[int]]]) -> Table:
        table: Table = {}
        for key, counts in items:
            nxt = torch.tensor(list(counts), dtype=torch.long, device=self.device)
            weight = torch.tensor(list(counts.values()), dtype=torch.float, device=self.device)
            table[key] = (nxt, weight)
        return table

    def predict(
        self,
        prompt: str = Input(
            description="Words to continue (words the text never uses start a fresh sentence)",
            default="Alice was",
        ),
        max_tokens: int = Input(description="How many words to generate", default=40, ge=1, le=500),
        temperature: float = Input(
            description="Below 1 favours the most common next word; above 1 flattens the odds",
            default=1.0,
            ge=0.1,
            le=3.0,
        ),
        seed: int | None = Input(description="Random seed; leave empty for a random one"),
        delay: float = Input(
            description="Seconds to wait between words, so the stream is visible",
            default=0.05,
            ge=0.0,
            le=1.0,
        ),
    ) -> ConcatenateIterator[str]:
        if seed is None:
            seed = random.randrange(2**31)
        print(f"seed {seed}")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        context = [word.lower() for word in prompt.split()]
        separator = " " if prompt.strip() else ""
        for _ in range(max_tokens):
            word = self._next(context, temperature, generator)
            yield separator + word
            separator = " "
            context.append(word.lower())
            if delay:
                time.sleep(delay)

    def _next(self, context: list[str], temperature: float, generator: torch.Generator) -> str:
        """Sample after the last two words, else the last one, else start a sentence."""
        found = self.pairs.get(tuple(context[-2:])) if len(context) >= 2 else None
        if found is None and context:
            found = self.singles.get(tuple(context[-1:]))
        if found is None:
            pick = torch.randint(len(self.starts), (1,), generator=generator, device=self.device)
            return self.words[self.starts[int(pick)]]
        nxt, weight = found
        probs = weight.pow(1.0 / temperature)
        choice = torch.multinomial(probs, 1, generator=generator)
        return self.vocab[int(nxt[choice])]
