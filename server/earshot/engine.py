"""Batched Whisper inference on CTranslate2, knowing nothing of sockets or sessions.

``WhisperEngine.transcribe(requests)`` takes any mix of utterances (finals, partials,
file segments) and returns one ``Transcript`` each. Inside, requests are grouped by
encoder window (see ``windows.py``) and each group goes through one batched
``encode`` → ``detect_language`` (only where needed) → ``generate`` → optional
``align`` for word timestamps. Outputs that look like runaways are re-run on the full
30 s window; outputs that look like hallucinations are blanked with the reason; a
prompted output that speaks its prompt is replaced by the unprompted decode
(``prompt_copy.py``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, replace

import ctranslate2
import numpy as np
from faster_whisper.feature_extractor import FeatureExtractor
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import merge_punctuations

from earshot.config import EngineConfig
from earshot.cuda_runtime import ensure_cublas12_compat
from earshot.model_store import ModelNotFound, resolve_model
from earshot.prompt_copy import copied_words, is_copy, may_copy
from earshot.transcript import Priority, Transcript, TranscriptionRequest, Word
from earshot.windows import (
    FULL_WINDOW,
    choose_window,
    compression_ratio,
    looks_like_runaway,
    repeats_its_tail,
    token_budget,
)

log = logging.getLogger(__name__)
HOP = 160  # samples per feature frame
MAX_PROMPT_TOKENS = 223
WHISPER_CONTEXT = 448
LANGUAGE_CONFIDENCE = 0.6
SHORT_FOR_DETECTION_S = 2.0
# faster-whisper's defaults: punctuation sticks to the neighbouring word.
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded; the message is for humans."""


@dataclass
class BatchStats:
    """What one ``transcribe`` call did, for metrics and benchmarks."""

    requests: int = 0
    encoder_calls: int = 0
    fallbacks: int = 0
    beam_loops: int = 0
    """Wide-beam outputs that repeated their tail and were decoded greedily instead."""
    prompt_copies: int = 0
    """Prompted outputs replaced by their unprompted decode (``prompt_copy.py``)."""
    seconds: float = 0.0


@dataclass
class _Decoded:
    tokens: list[int]
    text: str
    language: str
    avg_logprob: float
    no_speech_prob: float


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    if compute_type != "default":
        return compute_type
    return "float16" if device == "cuda" else "int8"


def resolve_parallelism(config: EngineConfig, device: str) -> tuple[int, int]:
    """(replicas, threads per replica) for CTranslate2; 0 threads = its own default."""
    if device == "cuda":
        return config.workers or 1, config.cpu_threads
    threads = config.cpu_threads or 1
    return config.workers or max(1, (os.cpu_count() or 1) // threads), threads


class WhisperEngine:
    """Owns one loaded Whisper model with ``workers`` replicas: up to that many threads
    may call ``transcribe`` at once, each call running on a free replica."""

    def __init__(self, config: EngineConfig) -> None:
        from faster_whisper import WhisperModel

        self.config = config
        if config.device != "cpu":
            # Before the first CUDA call: cuBLAS 12 name on CUDA 13 hosts, JIT cache.
            ensure_cublas12_compat(config.device)
        self.device = resolve_device(config.device)
        self.compute_type = resolve_compute_type(config.compute_type, self.device)
        self.workers, threads = resolve_parallelism(config, self.device)
        try:
            path = resolve_model(config.model)
            self._model = WhisperModel(
                path,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=threads,
                num_workers=self.workers,
                download_root=config.download_root,
            )
        except ModelNotFound as exc:
            raise ModelLoadError(str(exc)) from exc
        except Exception as exc:  # CT2/hub errors come in many types
            raise ModelLoadError(
                f"could not load model {config.model!r} on {self.device}/{self.compute_type}: {exc}"
            ) from exc
        self.model_name = config.model
        self._ct2 = self._model.model
        n_mels = int(self._ct2.n_mels)
        if self._model.feature_extractor.mel_filters.shape[0] != n_mels:
            # large-v3(-turbo) wants 128 mel bins; a folder converted without its
            # preprocessor_config.json would get faster-whisper's default 80 and fail.
            log.warning("model expects %d mel bins; no preprocessor_config.json says so", n_mels)
            self._model.feature_extractor = FeatureExtractor(feature_size=n_mels)
        self.multilingual = bool(self._ct2.is_multilingual)
        self._tokenizers: dict[str, Tokenizer] = {}
        self._suppress: list[int] = list(self._tokenizer("en").non_speech_tokens)
        self.languages: frozenset[str] = (
            frozenset(self._model.supported_languages) if self.multilingual else frozenset({"en"})
        )
        self._calls = threading.local()

    @property
    def last_stats(self) -> BatchStats:
        """What this thread's last ``transcribe`` call did."""
        stats: BatchStats = getattr(self._calls, "stats", None) or BatchStats()
        return stats

    # -- public -------------------------------------------------------------------------
    def transcribe(self, requests: list[TranscriptionRequest]) -> list[Transcript]:
        started = time.perf_counter()
        self._calls.stats = BatchStats(requests=len(requests))
        results: dict[int, Transcript] = {}
        # One encode per window size, one generate per (window, beam width): CTranslate2
        # takes one beam width per call.
        groups: dict[tuple[int, int], list[TranscriptionRequest]] = defaultdict(list)
        for request in requests:
            groups[self._window_for(request), self._beam_for(request)].append(request)
        retry: dict[int, list[TranscriptionRequest]] = defaultdict(list)
        for (window, beam), group in sorted(groups.items()):
            for request, transcript in zip(group, self._run_group(group, window, beam)):
                if transcript is None:
                    retry[beam].append(request)
                else:
                    results[request.id] = transcript
        for beam, group in sorted(retry.items()):
            self.last_stats.fallbacks += len(group)
            for request, transcript in zip(group, self._run_group(group, FULL_WINDOW, beam)):
                results[request.id] = transcript or self._blank(request, "repetition", beam=beam)
        self.last_stats.seconds = time.perf_counter() - started
        return [results[r.id] for r in requests]

    def reference_transcribe(self, audio: np.ndarray, language: str | None, beam_size: int) -> str:
        """faster-whisper's own offline ``transcribe`` of ``audio`` with this model (30 s
        windows, timestamps, previous text as context, its temperature fallback): the
        offline decode ``earshot eval --vs-faster-whisper`` compares streaming with."""
        segments, _ = self._model.transcribe(
            audio, language=language, beam_size=beam_size, vad_filter=False
        )
        return " ".join(segment.text.strip() for segment in segments).strip()

    def warm_up(self) -> None:
        """One tiny decode so the first user doesn't pay for lazy initialisation."""
        self.transcribe([_silence_request()])

    # -- internals ----------------------------------------------------------------------
    def _beam_for(self, request: TranscriptionRequest) -> int:
        return max(self.config.beam_size, request.beam_size)

    def _window_for(self, request: TranscriptionRequest) -> int:
        frames = -(-len(request.audio) // HOP)
        return choose_window(frames, self.config.window_buckets, self.config.min_tail_frames)

    def _tokenizer(self, language: str) -> Tokenizer:
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            tokenizer = Tokenizer(
                self._model.hf_tokenizer,
                self.multilingual,
                task="transcribe",
                language=language if self.multilingual else "en",
            )
            self._tokenizers[language] = tokenizer
        return tokenizer

    def _features(self, group: list[TranscriptionRequest], window: int) -> ctranslate2.StorageView:
        extractor = self._model.feature_extractor
        batch = np.empty((len(group), extractor.mel_filters.shape[0], window), np.float32)
        for i, request in enumerate(group):
            window_features(extractor, request.audio, window, out=batch[i])
        return ctranslate2.StorageView.from_array(batch)

    def _run_group(
        self, group: list[TranscriptionRequest], window: int, beam: int
    ) -> list[Transcript | None]:
        """Transcripts for one window size and beam width; None marks a runaway to retry
        on 30 s."""
        self.last_stats.encoder_calls += 1
        encoded = self._ct2.encode(self._features(group, window), to_cpu=False)
        languages, unsure = self._languages(group, encoded)
        decoded = self._generate(group, encoded, languages, beam)
        words = self._words(group, encoded, decoded)
        out: list[Transcript | None] = []
        for request, result, request_words, language_unsure in zip(group, decoded, words, unsure):
            duration = request.duration
            if looks_like_runaway(
                len(result.tokens), result.text, duration, self.config.compression_ratio_threshold
            ):
                out.append(
                    None
                    if window < FULL_WINDOW
                    else self._blank(request, "repetition", result, beam)
                )
                continue
            reason = self._hallucination(result)
            if not reason and language_unsure and request.priority is Priority.PARTIAL:
                # A second of audio in an unknown language is often mis-detected;
                # better no partial than one in the wrong language. Finals always speak.
                reason = "language_unsure"
            if reason:
                out.append(self._blank(request, reason, result, beam))
                continue
            out.append(
                Transcript(
                    text=result.text,
                    language=result.language,
                    words=request_words,
                    avg_logprob=result.avg_logprob,
                    no_speech_prob=result.no_speech_prob,
                    window_frames=window,
                    beam_size=beam,
                )
            )
        out = self._without_prompt_copies(group, out, window, beam)
        return self._greedy_where_the_beam_looped(group, out, window, beam)

    def _greedy_where_the_beam_looped(
        self,
        group: list[TranscriptionRequest],
        out: list[Transcript | None],
        window: int,
        beam: int,
    ) -> list[Transcript | None]:
        """Decode greedily each wide-beam output that repeats its tail (``windows.py``):
        the greedy decode of the same audio does not loop there."""
        if beam == 1:
            return out
        looped = [i for i, t in enumerate(out) if t is not None and repeats_its_tail(t.text)]
        if not looped:
            return out
        self.last_stats.beam_loops += len(looped)
        greedy = [replace(group[i], beam_size=1) for i in looped]
        for i, transcript in zip(looped, self._run_group(greedy, window, 1)):
            out[i] = transcript
        return out

    def _without_prompt_copies(
        self,
        group: list[TranscriptionRequest],
        out: list[Transcript | None],
        window: int,
        beam: int,
    ) -> list[Transcript | None]:
        """Re-decode without its prompt each output that may copy the prompt, and keep
        the unprompted text where the prompted one has words only the prompt supports."""
        suspects = [
            i
            for i, (request, transcript) in enumerate(zip(group, out))
            if request.prompt and transcript and may_copy(transcript.text, request.prompt)
        ]
        if not suspects:
            return out
        plain = self._run_group([replace(group[i], prompt=None) for i in suspects], window, beam)
        for i, unprompted in zip(suspects, plain):
            prompted, prompt = out[i], str(group[i].prompt)
            assert prompted is not None
            if unprompted is None:
                out[i] = None  # a runaway without the prompt: both retry on 30 s
            elif is_copy(prompted.text, unprompted.text, prompt):
                self.last_stats.prompt_copies += 1
                log.info(
                    "decode copied its prompt (%s); kept the unprompted decode",
                    " ".join(copied_words(prompted.text, unprompted.text, prompt)),
                )
                out[i] = unprompted
        return out

    def _languages(
        self, group: list[TranscriptionRequest], encoded: ctranslate2.StorageView
    ) -> tuple[list[str], list[bool]]:
        """Language per request, and whether it was a guess (detected, unsure, no hint)."""
        if not self.multilingual:
            return ["en"] * len(group), [False] * len(group)
        if all(r.language for r in group):
            return [str(r.language) for r in group], [False] * len(group)
        detected = self._ct2.detect_language(encoded)
        picks = [
            (str(r.language), False) if r.language else self._pick_language(r, probabilities)
            for r, probabilities in zip(group, detected)
        ]
        return [p[0] for p in picks], [p[1] for p in picks]

    def _pick_language(
        self, request: TranscriptionRequest, probabilities: list[tuple[str, float]]
    ) -> tuple[str, bool]:
        token, probability = probabilities[0]
        unsure = probability < LANGUAGE_CONFIDENCE
        if request.language_hint and (unsure or request.duration < SHORT_FOR_DETECTION_S):
            return request.language_hint, False
        return token.strip("<|>"), unsure

    def detect_language(self, audio: np.ndarray) -> str:
        """Most likely language of up to 30 s of speech (for whole files)."""
        if not self.multilingual:
            return "en"
        request = TranscriptionRequest(audio=audio[: 30 * 16000], priority=Priority.FILE)
        encoded = self._ct2.encode(self._features([request], FULL_WINDOW), to_cpu=False)
        return str(self._ct2.detect_language(encoded)[0][0][0].strip("<|>"))

    def _prompt(self, request: TranscriptionRequest, language: str) -> list[int]:
        tokenizer = self._tokenizer(language)
        prompt: list[int] = []
        if request.prompt:
            tokens = tokenizer.encode(" " + request.prompt.strip())
            prompt = [tokenizer.sot_prev, *tokens[-MAX_PROMPT_TOKENS:]]
        return [*prompt, *tokenizer.sot_sequence, tokenizer.no_timestamps]

    def _generate(
        self,
        group: list[TranscriptionRequest],
        encoded: ctranslate2.StorageView,
        languages: list[str],
        beam: int,
    ) -> list[_Decoded]:
        prompts = [self._prompt(r, lang) for r, lang in zip(group, languages)]
        budget = max(token_budget(r.duration) for r in group)
        # CTranslate2's Whisper counts the prompt in max_length and, like Whisper, samples
        # at most max_length / 2 new tokens: size it so every request gets its budget.
        longest_prompt = max(len(p) for p in prompts)
        max_length = min(WHISPER_CONTEXT, max(2 * budget, longest_prompt + budget))
        results = self._ct2.generate(
            encoded,
            prompts,
            beam_size=beam,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1, *self._suppress],
        )
        decoded = []
        for result, language in zip(results, languages):
            tokenizer = self._tokenizer(language)
            sequence = result.sequences_ids[0] if result.sequences_ids else []
            tokens = [t for t in sequence if t < tokenizer.eot]
            # CT2 scores are length-normalised cumulative log-probs (length_penalty=1).
            cumulative = result.scores[0] * len(tokens) if result.scores else 0.0
            decoded.append(
                _Decoded(
                    tokens=tokens,
                    text=tokenizer.decode(tokens).strip(),
                    language=language,
                    avg_logprob=cumulative / (len(tokens) + 1),
                    no_speech_prob=result.no_speech_prob,
                )
            )
        return decoded

    def _words(
        self,
        group: list[TranscriptionRequest],
        encoded: ctranslate2.StorageView,
        decoded: list[_Decoded],
    ) -> list[tuple[Word, ...]]:
        if not any(r.word_timestamps and d.tokens for r, d in zip(group, decoded)):
            return [()] * len(group)
        # One batched align call; its start sequence carries one language, which only
        # nudges cross-attention: acceptable for timing words.
        first = next(d for r, d in zip(group, decoded) if r.word_timestamps and d.tokens)
        tokenizer = self._tokenizer(first.language)
        text_tokens = [d.tokens or [tokenizer.eot] for d in decoded]
        frames = [max(1, -(-len(r.audio) // HOP)) for r in group]
        alignments = self._model.find_alignment(tokenizer, text_tokens, encoded, frames)
        words: list[tuple[Word, ...]] = []
        for request, result, alignment in zip(group, decoded, alignments):
            if not request.word_timestamps or not result.tokens:
                words.append(())
                continue
            merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
            words.append(
                tuple(
                    Word(
                        word=w["word"],
                        start=float(w["start"]),
                        end=float(w["end"]),
                        probability=float(w["probability"]),
                    )
                    for w in alignment
                    if w["word"]
                )
            )
        return words

    def _hallucination(self, result: _Decoded) -> str | None:
        cfg = self.config
        if not result.tokens:
            return None
        if (
            result.no_speech_prob > cfg.no_speech_threshold
            and result.avg_logprob < cfg.logprob_threshold
        ):
            return "no_speech"
        if result.no_speech_prob > cfg.no_speech_hard_threshold:
            return "no_speech"
        if result.avg_logprob < cfg.min_avg_logprob:
            return "low_confidence"
        if compression_ratio(result.text) > cfg.compression_ratio_threshold:
            return "repetition"
        return None

    def _blank(
        self,
        request: TranscriptionRequest,
        reason: str,
        result: _Decoded | None = None,
        beam: int = 1,
    ) -> Transcript:
        return Transcript(
            text="",
            language=result.language if result else (request.language or "en"),
            suppressed=reason,
            avg_logprob=result.avg_logprob if result else 0.0,
            no_speech_prob=result.no_speech_prob if result else 0.0,
            beam_size=beam,
        )


def window_features(
    extractor: FeatureExtractor, audio: np.ndarray, window: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Log-mel features of ``audio`` zero-padded to ``window`` frames, ``[n_mels, window]``.

    Equal (up to float32 rounding of the mel product) to running ``extractor`` on the
    whole padded window, at a cost proportional to the audio instead of the window:
    frames that see only padding are all alike (log10 of the clip floor, raised to
    ``max - 8`` by Whisper's normalisation, whose max they cannot change), so the
    spectrogram is computed over the audio plus ``n_fft`` zeros and its first silent
    frame is copied into the rest. Why it matters on a GPU: the numpy STFT of a whole
    10 s window takes ~4 ms of one core, close to the ~5 ms the encoder spends per
    utterance in a batch on an H100; for a 1 s partial this takes 0.7 ms
    (loadtest/results/gpu_h100_engine.json).
    """
    audio = audio[: window * HOP]
    n_fft = extractor.n_fft
    # Frame t covers samples [t*HOP - n_fft/2, t*HOP + n_fft/2): it sees audio iff t < this.
    speech = min(window, -(-(len(audio) + n_fft // 2) // HOP))
    padded = np.zeros(min(window * HOP, speech * HOP + n_fft), np.float32)
    padded[: len(audio)] = audio
    mel = extractor(padded, padding=0)
    if out is None:
        out = np.empty((mel.shape[0], window), np.float32)
    out[:, :speech] = mel[:, :speech]
    if speech < window:
        out[:, speech:] = mel[:, speech : speech + 1]  # frame `speech` sees zeros only
    return out


def _silence_request() -> TranscriptionRequest:
    return TranscriptionRequest(
        audio=np.zeros(16000, np.float32), priority=Priority.FILE, language="en"
    )
