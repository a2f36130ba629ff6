"""Random-weight CTranslate2 Whisper models, for tests and GPU benchmarks.

No real checkpoint is needed (nothing is downloaded): ``write_random_whisper_numpy``
builds the model through ``ctranslate2.specs`` alone (any shape; tests use tiny ones),
``write_random_whisper_transformers`` builds a random ``WhisperForConditionalGeneration``
and converts it with CTranslate2's own converter (needs torch + transformers), the path
a real checkpoint takes. Both default to the large-v3-turbo shape. Text is meaningless;
shapes, vocabulary layout and timings are those of the real model.

Command line (what ``loadtest.gpu_engine_bench`` measures)::

    python -m loadtest.random_model DIR --text-tokens-from VOCAB --tokenizer TOKENIZER_JSON

``--builder numpy`` avoids torch; ``--text-tokens-from`` reuses a real Whisper
``vocabulary.txt`` (so CTranslate2 sees a multilingual model) and ``--tokenizer`` copies
a ``tokenizer.json`` in, so that faster-whisper (and ``WhisperEngine``) loads the folder
offline.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


def read_vocabulary(model_dir: str | Path) -> list[str]:
    """Tokens of a converted model (``vocabulary.json`` from new converters, else ``.txt``)."""
    as_json = Path(model_dir, "vocabulary.json")
    if as_json.is_file():
        tokens: list[str] = json.loads(as_json.read_text(encoding="utf-8"))
        return tokens
    return Path(model_dir, "vocabulary.txt").read_text(encoding="utf-8").splitlines()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write a random-weight large-v3-turbo-shaped model.")
    ap.add_argument("out_dir", metavar="DIR", help="folder to write the model into")
    ap.add_argument("--builder", choices=("transformers", "numpy"), default="transformers")
    ap.add_argument("--text-tokens-from", help="vocabulary.txt whose text tokens to reuse")
    ap.add_argument("--tokenizer", help="tokenizer.json to copy into the model folder")
    args = ap.parse_args(argv)

    t = time.perf_counter()
    tokens: list[str] = []
    if args.text_tokens_from:
        tokens = Path(args.text_tokens_from).read_text(encoding="utf-8").splitlines()
    if args.builder == "transformers":
        write_random_whisper_transformers(args.out_dir, text_tokens=tokens)
    else:
        write_random_whisper_numpy(args.out_dir, text_tokens=tokens)
    write_preprocessor_config(args.out_dir, TURBO.n_mels)
    if args.tokenizer:  # lets faster-whisper (and so WhisperEngine) load the folder offline
        Path(args.out_dir, "tokenizer.json").write_bytes(Path(args.tokenizer).read_bytes())
    summary = {
        "model": args.out_dir,
        "builder": args.builder,
        "seconds": round(time.perf_counter() - t, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
