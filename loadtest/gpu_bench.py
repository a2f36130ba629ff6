"""GPU batch cost of a CTranslate2 Whisper model, and the stream capacity it implies.

Run::

    python -m loadtest.gpu_bench --model DIR --device cuda --compute-type float16 \
        --out loadtest/results/gpu_h100.json --plot loadtest/results/gpu_h100.png

What it measures, for every window bucket (feature frames; 100 frames = 1 s) and batch
size: the wall time of ``Whisper.encode`` on a batch of padded windows (host features
in, GPU encoder output out; the call returns once the output is ready), and of
``Whisper.generate`` on that output, greedy, with the end-of-text token suppressed so
that every utterance decodes exactly ``--tokens`` tokens. Medians of ``--repeats``
runs after ``--warmup`` runs.

What it simulates (``simulate``): N real-time streams, each alternating speech
segments and pauses. Every segment yields one *final* job when it ends (latency is
counted from that moment until its batch finishes on the GPU; VAD end-pointing delay
and feature extraction are not included) and, optionally, a *partial* job each
``partial_every_s`` while it lasts. One GPU runs one batch at a time. The scheduler
takes the oldest finals first (up to ``max_batch``), pads them to the largest bucket
among them, fills free slots with partials that fit that bucket, waits up to
``wait_ms`` for a batch to fill when the GPU is idle, and keeps only the newest
partial per stream. Batch cost = measured encoder time + measured decoder time scaled
by the largest token count in the batch. Capacity = largest N whose p95 final
latency stays <= the target.

``--make-random-model DIR`` writes a random-weight model with the large-v3-turbo
shape (needs torch + transformers for ``--builder transformers``; ``--builder numpy``
writes the same shapes through ``ctranslate2.specs`` alone).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_REPO = Path(__file__).resolve().parents[1]
try:
    from earshot.cuda_runtime import ensure_cublas12_compat
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(_REPO / "server"))
    from earshot.cuda_runtime import ensure_cublas12_compat

BUCKETS = (1000, 1500, 2000, 3000)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)

# Whisper's language tokens, in token-id order (<|en|> = 50259 ... <|yue|> = 50358).
WHISPER_LANGS = [
    "en",
    "zh",
    "de",
    "es",
    "ru",
    "ko",
    "fr",
    "ja",
    "pt",
    "tr",
    "pl",
    "ca",
    "nl",
    "ar",
    "sv",
    "it",
    "id",
    "hi",
    "fi",
    "vi",
    "he",
    "uk",
    "el",
    "ms",
    "cs",
    "ro",
    "da",
    "hu",
    "ta",
    "no",
    "th",
    "ur",
    "hr",
    "bg",
    "lt",
    "la",
    "mi",
    "ml",
    "cy",
    "sk",
    "te",
    "fa",
    "lv",
    "bn",
    "sr",
    "az",
    "sl",
    "kn",
    "et",
    "mk",
    "br",
    "eu",
    "is",
    "hy",
    "ne",
    "mn",
    "bs",
    "kk",
    "sq",
    "sw",
    "gl",
    "mr",
    "pa",
    "si",
    "km",
    "sn",
    "yo",
    "so",
    "af",
    "oc",
    "ka",
    "be",
    "tg",
    "sd",
    "gu",
    "am",
    "yi",
    "lo",
    "uz",
    "fo",
    "ht",
    "ps",
    "tk",
    "nn",
    "mt",
    "sa",
    "lb",
    "my",
    "bo",
    "tl",
    "mg",
    "as",
    "tt",
    "haw",
    "ln",
    "ha",
    "ba",
    "jw",
    "su",
    "yue",
]


# --------------------------------------------------------------------------------------
# Random-weight models
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhisperDims:
    """Shape of a Whisper model (defaults: large-v3-turbo)."""

    n_mels: int = 128
    d_model: int = 1280
    heads: int = 20
    encoder_layers: int = 32
    decoder_layers: int = 4
    ffn: int = 5120
    vocab: int = 51866
    audio_ctx: int = 1500
    text_ctx: int = 448
    n_langs: int = 100


TURBO = WhisperDims()


def whisper_vocabulary(dims: WhisperDims, text_tokens: Sequence[str] = ()) -> list[str]:
    """Token list with Whisper's special-token layout.

    Text tokens come from ``text_tokens`` (e.g. a real Whisper ``vocabulary.txt``, so
    that CTranslate2 recognises the model as multilingual), padded with placeholders.
    """
    n_text = dims.vocab - (1 + 1 + dims.n_langs + 6 + 1501)
    if n_text < 1:
        raise ValueError(f"vocab {dims.vocab} too small for the special tokens")
    langs = list(WHISPER_LANGS[: dims.n_langs])
    langs += [f"x{i}" for i in range(len(langs), dims.n_langs)]
    tokens = list(text_tokens[:n_text])
    tokens += [f"tok{i}" for i in range(len(tokens), n_text)]
    tokens += ["<|endoftext|>", "<|startoftranscript|>"]
    tokens += [f"<|{code}|>" for code in langs]
    tokens += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>"]
    tokens += ["<|nocaptions|>", "<|notimestamps|>"]
    tokens += ["<|%.2f|>" % (i * 0.02) for i in range(1501)]
    return tokens


def _sinusoids(length: int, channels: int) -> np.ndarray:
    inc = math.log(10000) / (channels // 2 - 1)
    inv = np.exp(-inc * np.arange(channels // 2, dtype=np.float32))
    t = np.arange(length, dtype=np.float32)[:, None] * inv[None, :]
    return np.concatenate([np.sin(t), np.cos(t)], axis=1).astype(np.float32)


def _whisper_config(dims: WhisperDims, tokens: list[str]) -> dict[str, Any]:
    eot = tokens.index("<|endoftext|>")
    lang_ids = [tokens.index(f"<|{c}|>") for c in WHISPER_LANGS[: dims.n_langs]]
    half = dims.decoder_layers // 2
    return {
        "suppress_ids": [1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31],
        "suppress_ids_begin": [220, eot],
        "lang_ids": lang_ids,
        "alignment_heads": [
            [layer, h] for layer in range(half, dims.decoder_layers) for h in range(dims.heads)
        ],
    }


def write_random_whisper_numpy(
    out_dir: str | Path,
    dims: WhisperDims = TURBO,
    quantization: str = "float16",
    seed: int = 0,
    text_tokens: Sequence[str] = (),
) -> Path:
    """Write a random-weight CTranslate2 Whisper model with ``ctranslate2.specs`` only."""
    from ctranslate2.specs import whisper_spec

    rng = np.random.default_rng(seed)
    d, f = dims.d_model, dims.ffn

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    def zeros(n: int) -> np.ndarray:
        return np.zeros(n, np.float32)

    def norm(s: Any) -> None:
        s.gamma, s.beta = np.ones(d, np.float32), zeros(d)

    def linear(s: Any, n_out: int, n_in: int) -> None:
        s.weight, s.bias = w(n_out, n_in), zeros(n_out)

    def ffn(s: Any) -> None:
        norm(s.layer_norm)
        linear(s.linear_0, f, d)
        linear(s.linear_1, d, f)

    spec = whisper_spec.WhisperSpec(
        dims.encoder_layers, dims.heads, dims.decoder_layers, dims.heads
    )
    enc = spec.encoder
    enc.conv1.weight, enc.conv1.bias = w(d, dims.n_mels, 3), zeros(d)
    enc.conv2.weight, enc.conv2.bias = w(d, d, 3), zeros(d)
    enc.position_encodings.encodings = _sinusoids(dims.audio_ctx, d)
    norm(enc.layer_norm)
    for layer in enc.layer:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d, d)
        linear(layer.self_attention.linear[1], d, d)
        ffn(layer.ffn)
    dec = spec.decoder
    dec.embeddings.weight = w(dims.vocab, d)
    dec.position_encodings.encodings = w(dims.text_ctx, d)
    norm(dec.layer_norm)
    dec.projection.weight = dec.embeddings.weight
    for layer in dec.layer:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d, d)
        linear(layer.self_attention.linear[1], d, d)
        norm(layer.attention.layer_norm)
        linear(layer.attention.linear[0], d, d)
        linear(layer.attention.linear[1], 2 * d, d)
        linear(layer.attention.linear[2], d, d)
        ffn(layer.ffn)
    tokens = whisper_vocabulary(dims, text_tokens)
    spec.register_vocabulary(tokens)
    for key, value in _whisper_config(dims, tokens).items():
        setattr(spec.config, key, value)
    spec.validate()
    spec.optimize(quantization=quantization)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))
    return out


def write_random_whisper_transformers(
    out_dir: str | Path, dims: WhisperDims = TURBO, seed: int = 0, text_tokens: Sequence[str] = ()
) -> Path:
    """Random ``WhisperForConditionalGeneration`` converted by CTranslate2's own converter.

    This is the path a real checkpoint takes (``ct2-transformers-converter
    --quantization float16``); only the tokenizer is replaced, since none exists offline.
    """
    import tempfile

    import torch
    import transformers
    from ctranslate2.converters import TransformersConverter

    tokens = whisper_vocabulary(dims, text_tokens)
    eot, sot = tokens.index("<|endoftext|>"), tokens.index("<|startoftranscript|>")
    cfg = transformers.WhisperConfig(
        vocab_size=dims.vocab,
        num_mel_bins=dims.n_mels,
        d_model=dims.d_model,
        encoder_layers=dims.encoder_layers,
        encoder_attention_heads=dims.heads,
        decoder_layers=dims.decoder_layers,
        decoder_attention_heads=dims.heads,
        encoder_ffn_dim=dims.ffn,
        decoder_ffn_dim=dims.ffn,
        max_source_positions=dims.audio_ctx,
        max_target_positions=dims.text_ctx,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
    )
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(cfg).eval()
    extra = _whisper_config(dims, tokens)
    gen = model.generation_config
    gen.suppress_tokens = extra["suppress_ids"]
    gen.begin_suppress_tokens = extra["suppress_ids_begin"]
    gen.alignment_heads = extra["alignment_heads"]
    gen.lang_to_id = {f"<|{c}|>": i for c, i in zip(WHISPER_LANGS, extra["lang_ids"], strict=False)}
    n_base = tokens.index("<|notimestamps|>") + 1

    class _Tokenizer:
        additional_special_tokens: tuple[str, ...] = ()

        def get_vocab(self) -> dict[str, int]:
            return {t: i for i, t in enumerate(tokens[:n_base])}

    class _InMemory(TransformersConverter):
        def load_model(self, model_class: Any, path: str, **kwargs: Any) -> Any:
            return model.half() if kwargs.get("dtype") == torch.float16 else model

        def load_tokenizer(self, tokenizer_class: Any, path: str, **kwargs: Any) -> Any:
            return _Tokenizer()

    with tempfile.TemporaryDirectory() as tmp:
        cfg.save_pretrained(tmp)
        _InMemory(tmp, load_as_float16=True).convert(
            str(out_dir), quantization="float16", force=True
        )
    return Path(out_dir)


def write_preprocessor_config(out_dir: str | Path, n_mels: int) -> Path:
    """The ``preprocessor_config.json`` that tells faster-whisper how many mel bins to make
    (large-v3 and turbo: 128; without it faster-whisper assumes 80)."""
    config = {
        "chunk_length": 30,
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": n_mels,
        "hop_length": 160,
        "n_fft": 400,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "processor_class": "WhisperProcessor",
        "return_attention_mask": False,
        "sampling_rate": 16000,
    }
    path = Path(out_dir, "preprocessor_config.json")
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------


def read_vocabulary(model_dir: str | Path) -> list[str]:
    """Tokens of a converted model (``vocabulary.json`` from new converters, else ``.txt``)."""
    as_json = Path(model_dir, "vocabulary.json")
    if as_json.is_file():
        tokens: list[str] = json.loads(as_json.read_text(encoding="utf-8"))
        return tokens
    return Path(model_dir, "vocabulary.txt").read_text(encoding="utf-8").splitlines()


def _prompt(vocab: list[str]) -> list[int]:
    """[sot, <|en|>, transcribe, notimestamps] (multilingual) or [sot, notimestamps]."""
    ids = {t: i for i, t in enumerate(vocab)}
    prompt = [ids["<|startoftranscript|>"]]
    if "<|en|>" in ids and "<|transcribe|>" in ids and len(vocab) >= 51865:
        prompt += [ids["<|en|>"], ids["<|transcribe|>"]]
    return [*prompt, ids["<|notimestamps|>"]]


def _gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def measure(
    model_dir: str | Path,
    device: str,
    compute_type: str,
    buckets: Sequence[int] = BUCKETS,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    tokens: int = 20,
    repeats: int = 5,
    warmup: int = 2,
    seed: int = 0,
    flash_attention: bool = False,
) -> dict[str, Any]:
    """Time encode and generate for every (bucket, batch size); see the module docstring."""
    shim = ensure_cublas12_compat(device)
    import ctranslate2

    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"compute_type": compute_type}
    if flash_attention:
        kwargs["flash_attention"] = True
    model = ctranslate2.models.Whisper(str(model_dir), device=device, **kwargs)
    load_s = time.perf_counter() - t0
    vocab = read_vocabulary(model_dir)
    eot = vocab.index("<|endoftext|>")
    prompt = _prompt(vocab)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    first_call_s: float | None = None
    for frames in buckets:
        for batch in batch_sizes:
            feats = np.ascontiguousarray(
                rng.standard_normal((batch, model.n_mels, frames), dtype=np.float32)
            )
            enc_t: list[float] = []
            dec_t: list[float] = []
            for i in range(warmup + repeats):
                sv = ctranslate2.StorageView.from_array(feats)
                a = time.perf_counter()
                enc = model.encode(sv, to_cpu=False)
                b = time.perf_counter()
                res = model.generate(
                    enc,
                    [prompt] * batch,
                    beam_size=1,
                    max_length=2 * tokens,  # CT2 decodes min(max_length/2, max_length-prompt)
                    suppress_tokens=[eot],
                    suppress_blank=False,
                )
                c = time.perf_counter()
                lengths = {len(r.sequences_ids[0]) for r in res}
                if lengths != {tokens}:
                    raise RuntimeError(f"decoded lengths {lengths}, expected {tokens}")
                if first_call_s is None:
                    first_call_s = c - a
                if i >= warmup:
                    enc_t.append((b - a) * 1000)
                    dec_t.append((c - b) * 1000)
            enc_ms, dec_ms = statistics.median(enc_t), statistics.median(dec_t)
            row = {
                "frames": frames,
                "batch": batch,
                "encode_ms": round(enc_ms, 3),
                "decode_ms": round(dec_ms, 3),
                "total_ms": round(enc_ms + dec_ms, 3),
                "encode_ms_min_max": [round(min(enc_t), 3), round(max(enc_t), 3)],
                "decode_ms_min_max": [round(min(dec_t), 3), round(max(dec_t), 3)],
                "utterances_per_s": round(batch / ((enc_ms + dec_ms) / 1000), 2),
                "ms_per_utterance": round((enc_ms + dec_ms) / batch, 3),
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    # Is encode() synchronous? Compare with to_cpu=True, which must wait for the result.
    sync: dict[str, Any] = {}
    frames, batch = max(buckets), min(8, max(batch_sizes))
    sv = ctranslate2.StorageView.from_array(
        np.ascontiguousarray(rng.standard_normal((batch, model.n_mels, frames), dtype=np.float32))
    )
    for to_cpu in (False, True, False, True):
        a = time.perf_counter()
        model.encode(sv, to_cpu=to_cpu)
        sync[f"encode_ms_to_cpu_{to_cpu}"] = round((time.perf_counter() - a) * 1000, 3)
    sync["shape"] = [batch, model.n_mels, frames]
    return {
        "model": str(model_dir),
        "device": device,
        "compute_type": compute_type,
        "flash_attention": flash_attention,
        "cublas12_shim": shim,
        "n_mels": model.n_mels,
        "is_multilingual": model.is_multilingual,
        "tokens_per_utterance": tokens,
        "prompt": prompt,
        "repeats": repeats,
        "warmup": warmup,
        "model_load_s": round(load_s, 3),
        "first_call_s": round(first_call_s or 0.0, 3),
        "cuda_cache_path": os.environ.get("CUDA_CACHE_PATH"),
        "gpu": _gpu_name(),
        "ctranslate2": ctranslate2.__version__,
        "python": platform.python_version(),
        "encode_sync_check": sync,
        "rows": rows,
    }


# --------------------------------------------------------------------------------------
# Capacity simulation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimParams:
    """Workload and scheduler of the capacity simulation (times in seconds)."""

    segment_s: tuple[float, float] = (2.0, 8.0)  # uniform speech-segment length
    pause_s: tuple[float, float] = (0.5, 1.5)  # uniform pause between segments
    partial_every_s: float | None = 1.0  # None: finals only
    tokens_per_s: float = 4.0  # tokens decoded per second of speech
    min_tokens: int = 4
    tail_frames: int = 100  # padding kept after speech when choosing a bucket
    max_batch: int = 32
    wait_ms: float = 0.0
    duration_s: float = 60.0
    warmup_s: float = 10.0
    target_p95_ms: float = 500.0
    # With partials on, a stream count also needs partials to stay useful:
    partial_p95_max_ms: float = 1000.0
    partial_min_delivered: float = 0.5  # share of partials not superseded before running
    seed: int = 1


@dataclass
class CostTable:
    """Measured batch costs: (frames, batch) -> (encode ms, decode ms for ``tokens``)."""

    tokens: int
    buckets: list[int]
    batches: list[int]
    enc: dict[tuple[int, int], float] = field(default_factory=dict)
    dec: dict[tuple[int, int], float] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]], tokens: int) -> CostTable:
        t = cls(tokens, sorted({r["frames"] for r in rows}), sorted({r["batch"] for r in rows}))
        for r in rows:
            t.enc[(r["frames"], r["batch"])] = r["encode_ms"]
            t.dec[(r["frames"], r["batch"])] = r["decode_ms"]
        return t

    def bucket(self, seconds: float, tail_frames: int) -> int:
        need = math.ceil(seconds * 100) + tail_frames
        return next((b for b in self.buckets if b >= need), self.buckets[-1])

    def cost_ms(self, frames: int, batch: int, max_tokens: int) -> float:
        """Measured cost at the next measured batch size >= batch (conservative)."""
        b = next((x for x in self.batches if x >= batch), self.batches[-1])
        return self.enc[(frames, b)] + self.dec[(frames, b)] * max_tokens / self.tokens


@dataclass
class _Job:
    stream: int
    submit: float
    frames: int
    tokens: int
    final: bool


def _make_jobs(n_streams: int, p: SimParams, table: CostTable) -> list[_Job]:
    rng = random.Random(p.seed)
    jobs: list[_Job] = []
    end = p.warmup_s + p.duration_s
    for s in range(n_streams):
        t = rng.uniform(0.0, p.segment_s[1] + p.pause_s[1])
        while t < end:
            seg = rng.uniform(*p.segment_s)
            if p.partial_every_s:
                k = 1
                while k * p.partial_every_s < seg:
                    dur = k * p.partial_every_s
                    toks = max(p.min_tokens, math.ceil(dur * p.tokens_per_s))
                    jobs.append(_Job(s, t + dur, table.bucket(dur, p.tail_frames), toks, False))
                    k += 1
            toks = max(p.min_tokens, math.ceil(seg * p.tokens_per_s))
            jobs.append(_Job(s, t + seg, table.bucket(seg, p.tail_frames), toks, True))
            t += seg + rng.uniform(*p.pause_s)
    jobs.sort(key=lambda j: j.submit)
    return jobs


def simulate(n_streams: int, p: SimParams, table: CostTable) -> dict[str, Any]:
    """Run the single-GPU batch scheduler over ``n_streams`` streams; latency stats in ms."""
    jobs = _make_jobs(n_streams, p, table)
    finals: deque[_Job] = deque()
    partials: dict[int, _Job] = {}  # newest pending partial per stream (insertion = age order)
    final_lat: list[float] = []
    partial_lat: list[float] = []
    dropped = 0
    busy = 0.0
    batches = 0
    i, n, now = 0, len(jobs), 0.0
    end = p.warmup_s + p.duration_s
    wait = p.wait_ms / 1000.0

    def admit(until: float) -> None:
        nonlocal i, dropped
        while i < n and jobs[i].submit <= until:
            j = jobs[i]
            if j.final:
                finals.append(j)
                if partials.pop(j.stream, None) is not None:  # the final supersedes it
                    dropped += 1
            else:
                if partials.pop(j.stream, None) is not None:
                    dropped += 1
                partials[j.stream] = j
            i += 1

    while i < n or finals or partials:
        admit(now)
        if not finals and not partials:
            if i >= n:
                break
            now = jobs[i].submit
            continue
        if wait > 0 and len(finals) + len(partials) < p.max_batch:
            oldest = min(
                finals[0].submit if finals else math.inf,
                next(iter(partials.values())).submit if partials else math.inf,
            )
            if now < oldest + wait:  # idle GPU: gather until the window closes or a job comes
                now = min(oldest + wait, jobs[i].submit if i < n else math.inf)
                continue
        batch: list[_Job] = []
        while finals and len(batch) < p.max_batch:
            batch.append(finals.popleft())
        frames = max((j.frames for j in batch), default=0)
        if len(batch) < p.max_batch and partials:
            if not batch:
                frames = max(j.frames for j in list(partials.values())[: p.max_batch])
            for s in list(partials):
                if len(batch) >= p.max_batch:
                    break
                if partials[s].frames <= frames:
                    batch.append(partials.pop(s))
        cost = table.cost_ms(frames, len(batch), max(j.tokens for j in batch)) / 1000.0
        busy += max(0.0, min(now + cost, end) - max(now, p.warmup_s))
        now += cost
        batches += 1
        for j in batch:
            if j.submit >= p.warmup_s and j.submit < end:
                (final_lat if j.final else partial_lat).append((now - j.submit) * 1000.0)
        if now > end + 30.0:  # hopelessly overloaded: stop, the tail is meaningless
            final_lat.append(math.inf)
            break

    def pct(xs: list[float], q: float) -> float:
        if not xs:
            return 0.0
        xs = sorted(xs)
        return xs[min(len(xs) - 1, math.ceil(q / 100 * len(xs)) - 1)]

    submitted = sum(1 for j in jobs if not j.final and p.warmup_s <= j.submit < end)
    return {
        "streams": n_streams,
        "finals": len(final_lat),
        "final_p50_ms": round(pct(final_lat, 50), 1),
        "final_p95_ms": round(pct(final_lat, 95), 1),
        "final_p99_ms": round(pct(final_lat, 99), 1),
        "partials_done": len(partial_lat),
        "partial_p95_ms": round(pct(partial_lat, 95), 1),
        "partials_superseded": dropped,
        "partials_delivered": round(len(partial_lat) / submitted, 3) if submitted else None,
        "gpu_busy": round(busy / p.duration_s, 3),
        "batches": batches,
    }


def capacity(p: SimParams, table: CostTable, upper: int = 20000) -> dict[str, Any]:
    """Largest stream count meeting the SLO (doubling, then bisection).

    SLO: p95 final latency <= ``target_p95_ms``; with partials on, also partial p95 <=
    ``partial_p95_max_ms`` and at least ``partial_min_delivered`` of them delivered.
    """

    def ok(k: int) -> tuple[bool, dict[str, Any]]:
        r = simulate(k, p, table)
        passed = r["final_p95_ms"] <= p.target_p95_ms
        if p.partial_every_s:
            passed = passed and r["partial_p95_ms"] <= p.partial_p95_max_ms
            passed = passed and (r["partials_delivered"] or 0.0) >= p.partial_min_delivered
        return passed, r

    good, good_r = 0, None
    k = 8
    bad = None
    while k <= upper:
        passed, r = ok(k)
        if passed:
            good, good_r = k, r
            k *= 2
        else:
            bad = k
            break
    if bad is None:
        bad = upper
    while bad - good > max(1, good // 50):
        mid = (good + bad) // 2
        passed, r = ok(mid)
        if passed:
            good, good_r = mid, r
        else:
            bad = mid
    return {"max_streams": good, "at_max": good_r, "first_failing": bad}


def capacity_report(
    result: dict[str, Any], grid: Sequence[tuple[int, float]] | None = None
) -> dict[str, Any]:
    """Capacity for finals-only and finals+partials workloads over a scheduler grid."""
    table = CostTable.from_rows(result["rows"], result["tokens_per_utterance"])
    grid = grid or [(b, w) for b in (16, 32, 64) for w in (0.0, 25.0)]
    grid = [(b, w) for b, w in grid if b <= max(table.batches)]
    out: dict[str, Any] = {}
    workloads = (
        ("finals_only", None),
        ("finals_and_partials_1s", 1.0),
        ("finals_and_partials_2s", 2.0),
    )
    for label, every in workloads:
        runs = []
        for max_batch, wait_ms in grid:
            p = SimParams(partial_every_s=every, max_batch=max_batch, wait_ms=wait_ms)
            c = capacity(p, table)
            runs.append({"max_batch": max_batch, "wait_ms": wait_ms, **c})
            print(
                json.dumps(
                    {label: runs[-1]["max_streams"], "max_batch": max_batch, "wait_ms": wait_ms}
                ),
                file=sys.stderr,
                flush=True,
            )
        best = max(runs, key=lambda r: r["max_streams"])
        out[label] = {"best": best, "grid": runs}
    p0 = SimParams()
    mean_final_s = (p0.segment_s[0] + p0.segment_s[1]) / 2 + (p0.pause_s[0] + p0.pause_s[1]) / 2
    best_rate = max(r["utterances_per_s"] for r in result["rows"])
    out["assumptions"] = {
        **{
            k: v
            for k, v in asdict(p0).items()
            if k not in ("max_batch", "wait_ms", "partial_every_s")
        },
        "latency_counts": "from utterance end (final job submitted) to batch completion on "
        "the GPU; excludes VAD end-pointing delay, feature extraction and network",
        "batch_cost": "measured encode_ms + decode_ms * max_tokens_in_batch / "
        "tokens_per_utterance, at the next measured batch size >= the batch",
        "scheduler": "one batch at a time; oldest finals first, padded to their largest bucket; "
        "partials fill free slots if their bucket fits; newest partial per stream kept",
    }
    out["throughput_bound_streams_finals_only"] = round(best_rate * mean_final_s, 1)
    return out


# --------------------------------------------------------------------------------------
# Plot and CLI
# --------------------------------------------------------------------------------------


def plot(result: dict[str, Any], path: str | Path) -> bool:
    """PNG of per-utterance cost and batch times; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = result["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for frames in sorted({r["frames"] for r in rows}):
        rs = [r for r in rows if r["frames"] == frames]
        xs = [r["batch"] for r in rs]
        axes[0].plot(xs, [r["ms_per_utterance"] for r in rs], marker="o", label=f"{frames} frames")
        axes[1].plot(xs, [r["encode_ms"] for r in rs], marker="o", label=f"encode {frames}")
        axes[1].plot(
            xs, [r["decode_ms"] for r in rs], marker="x", linestyle="--", label=f"decode {frames}"
        )
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("ms per utterance (encode + decode)")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("ms per batch")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=7, ncol=2)
    where = result.get("gpu") or result["device"]
    title = f"{Path(result['model']).name} {result['compute_type']} on {where}"
    title += f", {result['tokens_per_utterance']} tokens/utterance"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="CTranslate2 Whisper model folder")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--compute-type", default="float16")
    ap.add_argument("--buckets", type=_ints, default=list(BUCKETS))
    ap.add_argument("--batch-sizes", type=_ints, default=list(BATCH_SIZES))
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--flash-attention", action="store_true")
    ap.add_argument("--no-sim", action="store_true", help="skip the capacity simulation")
    ap.add_argument(
        "--simulate-only", metavar="JSON", help="re-run the simulation on saved measurements"
    )
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--plot", help="write a PNG plot here (needs matplotlib)")
    ap.add_argument(
        "--make-random-model", metavar="DIR", help="write a random large-v3-turbo-shaped model"
    )
    ap.add_argument("--builder", choices=("transformers", "numpy"), default="transformers")
    ap.add_argument("--text-tokens-from", help="vocabulary.txt whose text tokens to reuse")
    ap.add_argument("--tokenizer", help="tokenizer.json to copy into the random model folder")
    args = ap.parse_args(argv)

    if args.make_random_model:
        t = time.perf_counter()
        tokens: list[str] = []
        if args.text_tokens_from:
            tokens = Path(args.text_tokens_from).read_text(encoding="utf-8").splitlines()
        if args.builder == "transformers":
            write_random_whisper_transformers(args.make_random_model, text_tokens=tokens)
        else:
            write_random_whisper_numpy(args.make_random_model, text_tokens=tokens)
        write_preprocessor_config(args.make_random_model, TURBO.n_mels)
        if args.tokenizer:  # lets faster-whisper (and so WhisperEngine) load the folder offline
            Path(args.make_random_model, "tokenizer.json").write_bytes(
                Path(args.tokenizer).read_bytes()
            )
        print(
            json.dumps(
                {
                    "model": args.make_random_model,
                    "builder": args.builder,
                    "seconds": round(time.perf_counter() - t, 1),
                }
            )
        )
        return 0
    if args.simulate_only:
        result = json.loads(Path(args.simulate_only).read_text())
    else:
        if not args.model:
            ap.error("--model is required")
        result = measure(
            args.model,
            args.device,
            args.compute_type,
            args.buckets,
            args.batch_sizes,
            args.tokens,
            args.repeats,
            args.warmup,
            flash_attention=args.flash_attention,
        )
    if not args.no_sim:
        t = time.perf_counter()
        result["capacity_p95_500ms"] = capacity_report(result)
        result["capacity_p95_500ms"]["simulation_s"] = round(time.perf_counter() - t, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    if args.plot and not plot(result, args.plot):
        print("matplotlib not installed: no plot", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
