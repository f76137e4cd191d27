"""Voice-activity detection with Silero VAD: a WAV in, speech segments and a speech-only WAV out.

The `silero-vad` wheel carries the TorchScript model, and it needs only torch: audio is read
and written by a small RIFF parser here (struct + numpy; no torchaudio, no ffmpeg). Any WAV
works: PCM 8/16/24/32-bit or float 32/64-bit, plain or EXTENSIBLE, any rate, any channels.
The detector listens to a mono copy at 16 kHz (8 kHz input stays 8 kHz); the output WAV keeps
the input's own samples and format, with the silences between the speech segments cut out.
Runs on the GPU when one is visible, else on the CPU.
"""

import struct
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from cog import BaseModel, BasePredictor, Input, Path
from silero_vad import get_speech_timestamps, load_silero_vad

VAD_RATES = (8000, 16000)  # what Silero listens at; other rates are resampled to 16 kHz
NOT_WAV = (
    "audio is not a WAV file this predictor reads ({why}); convert it first, "
    "e.g. `sox in.any -b 16 out.wav` or `ffmpeg -i in.any -c:a pcm_s16le out.wav`"
)


class Output(BaseModel):
    segments: list[dict[str, Any]]
    """Speech segments of the input, in order: {"start": seconds, "end": seconds}."""
    audio: Path
    """The speech segments joined into one WAV (same format as the input)."""
    input_seconds: float
    speech_seconds: float


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_silero_vad().to(self.device)
        print(f"loaded Silero VAD on {self.device}")

    def predict(
        self,
        audio: Path = Input(description="A WAV file: PCM or float, any rate, any channels"),
        threshold: float = Input(
            description="Speech probability above which a 32 ms frame counts as speech",
            default=0.5,
            ge=0.05,
            le=0.95,
        ),
        min_speech_ms: int = Input(
            description="Speech shorter than this is dropped", default=250, ge=0, le=10000
        ),
        min_silence_ms: int = Input(
            description="Silence shorter than this does not split a segment",
            default=100,
            ge=0,
            le=10000,
        ),
        speech_pad_ms: int = Input(
            description="Padding kept on each side of a segment", default=30, ge=0, le=1000
        ),
    ) -> Output:
        began = time.monotonic()
        fmt, frames = read_wav(audio)
        total = len(frames) // fmt.frame_bytes
        mono = to_mono_float(frames, fmt)
        vad_rate = fmt.rate if fmt.rate in VAD_RATES else VAD_RATES[-1]
        listened = resample(mono, fmt.rate, vad_rate)
        with torch.inference_mode():
            found = get_speech_timestamps(
                torch.from_numpy(listened).to(self.device),
                self.model,
                threshold=threshold,
                sampling_rate=vad_rate,
                min_speech_duration_ms=min_speech_ms,
                min_silence_duration_ms=min_silence_ms,
                speech_pad_ms=speech_pad_ms,
            )
        segments: list[dict[str, Any]] = []
        kept = bytearray()
        for item in found:  # sample indices at vad_rate → frames of the input
            start = min(total, round(item["start"] * fmt.rate / vad_rate))
            end = min(total, round(item["end"] * fmt.rate / vad_rate))
            if end <= start:
                continue
            segments.append({"start": round(start / fmt.rate, 3), "end": round(end / fmt.rate, 3)})
            kept += frames[start * fmt.frame_bytes : end * fmt.frame_bytes]

        out = Path(tempfile.mkdtemp(prefix="vad-")) / "speech.wav"
        write_wav(out, fmt, bytes(kept))
        speech_seconds = len(kept) / fmt.frame_bytes / fmt.rate
        print(
            f"{len(segments)} segment(s), {speech_seconds:.2f}s of speech in "
            f"{total / fmt.rate:.2f}s, on {self.device} in {time.monotonic() - began:.3f}s"
        )
        return Output(
            segments=segments,
            audio=out,
            input_seconds=round(total / fmt.rate, 3),
            speech_seconds=round(speech_seconds, 3),
        )


PCM, IEEE_FLOAT, EXTENSIBLE = 1, 3, 0xFFFE


@dataclass(frozen=True)
class WavFormat:
    tag: int  # PCM or IEEE_FLOAT
    channels: int
    rate: int
    width: int  # bytes per sample

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.width


def read_wav(path: Path) -> tuple[WavFormat, bytes]:
    """Parse a RIFF/WAVE file: PCM 8/16/24/32-bit or float 32/64-bit, plain or EXTENSIBLE.

    (The stdlib `wave` module of Python 3.11 reads neither float nor EXTENSIBLE files, which
    sox and ffmpeg write for 24-bit or multi-channel audio.)
    """
    blob = path.read_bytes()
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError(NOT_WAV.format(why="no RIFF/WAVE header"))
    fmt: WavFormat | None = None
    data: bytes | None = None
    pos = 12
    while pos + 8 <= len(blob) and data is None:
        chunk, size = blob[pos : pos + 4], struct.unpack("<I", blob[pos + 4 : pos + 8])[0]
        body = blob[pos + 8 : pos + 8 + size]  # a streamed file may claim more than it has
        if chunk == b"fmt " and len(body) >= 16:
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID's first field
            fmt = WavFormat(tag, channels, rate, bits // 8)
        elif chunk == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise ValueError(NOT_WAV.format(why="no fmt or data chunk"))
    supported = {PCM: {1, 2, 3, 4}, IEEE_FLOAT: {4, 8}}
    if fmt.width not in supported.get(fmt.tag, set()) or fmt.channels < 1 or fmt.rate < 1:
        raise ValueError(NOT_WAV.format(why=f"unsupported encoding {fmt}"))
    data = data[: len(data) // fmt.frame_bytes * fmt.frame_bytes]
    if not data:
        raise ValueError("audio has no samples")
    return fmt, data


def write_wav(path: Path, fmt: WavFormat, data: bytes) -> None:
    """A plain WAV in the input's own encoding (float files get the `fact` chunk they need)."""
    header = struct.pack(
        "<HHIIHH",
        fmt.tag,
        fmt.channels,
        fmt.rate,
        fmt.rate * fmt.frame_bytes,
        fmt.frame_bytes,
        fmt.width * 8,
    )
    chunks = [b"fmt ", struct.pack("<I", len(header)), header]
    if fmt.tag != PCM:
        chunks += [b"fact", struct.pack("<II", 4, len(data) // fmt.frame_bytes)]
    chunks += [b"data", struct.pack("<I", len(data)), data, b"\0" * (len(data) & 1)]
    body = b"".join(chunks)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)


def to_mono_float(frames: bytes, fmt: WavFormat) -> np.ndarray:
    """Samples → float32 in [-1, 1], channels averaged."""
    if fmt.tag == IEEE_FLOAT:
        samples = np.frombuffer(frames, dtype="<f4" if fmt.width == 4 else "<f8")
        samples = np.clip(samples.astype(np.float32), -1.0, 1.0)
    elif fmt.width == 1:  # 8-bit PCM is unsigned
        samples = (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif fmt.width == 2:
        samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    elif fmt.width == 3:  # packed 24-bit little-endian: widen to int32, keeping the sign
        raw = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        wide = raw[:, 0] | raw[:, 1] << 8 | raw[:, 2] << 16
        samples = np.where(wide >= 1 << 23, wide - (1 << 24), wide).astype(np.float32) / 8388608.0
    else:
        samples = np.frombuffer(frames, dtype="<i4").astype(np.float32) / 2147483648.0
    return np.ascontiguousarray(samples.reshape(-1, fmt.channels).mean(axis=1), dtype=np.float32)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Linear-interpolation resampling; plenty for a speech/no-speech decision."""
    if rate == target or len(samples) == 0:
        return samples
    if rate > target:  # a moving average first, so high frequencies do not fold back as noise
        width = max(1, round(rate / target))
        samples = np.convolve(samples, np.full(width, 1.0 / width, dtype=np.float32), "same")
    count = max(1, round(len(samples) * target / rate))
    positions = np.arange(count, dtype=np.float64) * (rate / target)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)
