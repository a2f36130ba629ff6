"""One streaming connection's logic, without sockets or a model (sans-I/O).

Theory of operation
-------------------
Feed it what the client sent (``receive_audio``, ``finalize``, ``close_stream``) and
what the engine answered (``receive_transcript``); read back what to do next:
``requests_to_engine()`` (utterance audio to transcribe) and ``messages_to_send()``
(protocol messages for the client). The asyncio adapter in ``listen.py`` only moves
bytes and results between those calls and the world.

Audio is decoded and resampled to 16 kHz (``PcmDecoder``), scored per 32 ms frame by
a ``VoiceDetector`` and segmented by ``UtteranceSegmenter``. The session keeps just
the audio of the open utterance (plus a pre-roll). While an utterance is open it asks
for a partial every ``partial_interval`` of new audio; when it closes it asks for the
final. Finals are released strictly in utterance order, exactly one each, even if the
engine answers out of order; a partial is dropped once its utterance's final was
requested, or when a newer partial of it was already sent. After ``close_stream`` the
session sends ``closed`` once every final is out.

Speculation and eager end of turn
---------------------------------
When a pause reaches ``speculate_after_s`` (250 ms) the final is requested early, for
exactly the audio the final would cover if this pause is the endpoint. State: the
speculative request, its result once answered, and whether ``eager_end_of_turn`` was
sent for it (only with the client's ``eager_eot``).

=====================  ===============================  ===================================
event                  before the result                after the result
=====================  ===============================  ===================================
result arrives         held; ``eager_end_of_turn``      –
                       once earlier finals are out
speech resumes         request cancelled                dropped; ``turn_resumed`` if the
                                                        eager message went out
endpoint at that end   the request becomes the final    its result is the final at once
other end (finalize,   cancelled; a new final request   dropped; the final follows (no
cut)                                                    ``turn_resumed``)
=====================  ===============================  ===================================

Prompt: ``configure`` (a control message) replaces the prompt and keyterms for
utterances that open afterwards; an open utterance keeps the prompt it opened with.
Other dialects' ``configure`` may also change the language (of utterances that open
afterwards) and the endpointing (``TurnDetection``, from the next audio on: with
``vad_endpointing`` off only ``finalize`` ends an utterance, OpenAI's manual commits).
``clear`` drops the open utterance's audio without transcribing it (OpenAI's
``input_audio_buffer.clear``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from earshot.audio import AudioFormat, decoder_for
from earshot.endpointing import (
    EndpointingConfig,
    State,
    UtteranceEnd,
    UtteranceSegmenter,
    UtteranceStart,
    with_turns,
)
from earshot.protocol import Configure, SessionOptions, effective_prompt, error_message
from earshot.transcript import SAMPLE_RATE, Priority, Transcript, TranscriptionRequest
from earshot.utterance_buffer import UtteranceBuffer
from earshot.vad import VoiceDetector


@dataclass(frozen=True)
class SessionTuning:
    """Server-side knobs that clients don't set."""

    partial_interval_s: float = 0.6
    """New audio between two partials of one utterance."""
    min_partial_s: float = 0.5
    """No partial before this much utterance audio: too little to say anything."""
    endpointing: EndpointingConfig = field(default_factory=EndpointingConfig)
    """VAD threshold, pre-/post-roll, speculation; a session takes ``endpointing_ms`` and
    ``max_utterance_s`` from its client's options instead."""


class StreamSession:
    def __init__(
        self,
        options: SessionOptions,
        vad: VoiceDetector,
        *,
        tuning: SessionTuning | None = None,
        session_id: str | None = None,
    ) -> None:
        self.options = options
        self.tuning = tuning or SessionTuning()
        self.id = session_id or uuid.uuid4().hex[:16]
        self._vad = vad
        self._decoder = decoder_for(AudioFormat(options.sample_rate, options.encoding))
        self.endpointing = replace(
            self.tuning.endpointing,
            endpointing_ms=options.endpointing_ms,
            max_utterance_s=options.max_utterance_s,
            vad_endpointing=options.vad_endpointing,
        )
        if not options.vad_endpointing:
            self.endpointing = replace(self.endpointing, speculate_after_s=None)
        self._segmenter = UtteranceSegmenter(self.endpointing)
        self._lookback = self.endpointing.preroll_samples + self.endpointing.max_onset_samples
        """Audio kept between utterances: the next one may start this far back (its
        onset is confirmed only once enough voice followed, then pre-roll is added)."""
        self._buffer = UtteranceBuffer()
        """Audio kept: samples [start, end) of the stream clock (end = all received)."""
        self._received = 0
        self._utterance: int | None = None
        """Number of the open utterance (None between utterances)."""
        self._utterance_start = 0
        self._next_utterance = 0
        self._last_partial_at = 0
        self._pending_finals: dict[int, TranscriptionRequest] = {}
        self._speculative: TranscriptionRequest | None = None
        """A final requested during a pause, before endpointing confirmed the end."""
        self._speculative_end = 0
        self._speculative_result: Transcript | None = None
        self._eager_sent = False
        """Whether ``eager_end_of_turn`` went out for the current speculation."""
        self._prompt = options.prompt
        self._keyterms: tuple[str, ...] = ()
        self._utterance_prompt = options.prompt
        """The prompt of the open utterance: the one current when it opened."""
        self._cancelled: list[TranscriptionRequest] = []
        self._ready_finals: dict[int, list[dict[str, Any]]] = {}
        """Per answered utterance, its messages (an engine error, then the final), held
        until every earlier utterance's are out."""
        self._next_final_out = 0
        self._partial_sent: dict[int, int] = {}
        """Request id of the newest partial sent per open utterance (older ones are stale)."""
        self._language_hint: str | None = None
        self._language = options.language
        """The language of utterances that open from now on (None: detect)."""
        self._utterance_language = options.language
        self._requests: list[TranscriptionRequest] = []
        self._messages: list[dict[str, Any]] = []
        self.closing = False
        self.closed = False

    # -- inputs -------------------------------------------------------------------------
    def receive_audio(self, frame: bytes) -> None:
        """A binary frame of PCM; raises ``AudioFormatError`` on a malformed one."""
        if self.closing:
            return
        self._append(self._decoder.decode(frame))

    def finalize(self) -> None:
        """Client's ``finalize``: end the open utterance now."""
        self._boundaries(self._segmenter.end_now(self._received))

    def configure(self, message: Configure) -> None:
        """Client's ``configure``: the prompt (and keyterms) of utterances that open
        from now on."""
        prompt, self._keyterms = message.apply(self._prompt, self._keyterms)
        self._prompt = prompt
        if message.set_language:
            self._language = message.language
        if message.turns is not None:
            self.endpointing = with_turns(
                self.endpointing, message.turns, self.tuning.endpointing.speculate_after_s
            )
            self._segmenter.reconfigure(self.endpointing)
            self._lookback = self.endpointing.preroll_samples + self.endpointing.max_onset_samples
            if not self.endpointing.vad_endpointing:
                self._drop_speculation(cancel=True)

    def clear(self) -> None:
        """Drop the audio received so far that no final covers: the open utterance
        (never transcribed; its number is skipped) and the pre-roll kept for the next."""
        if self.closing:
            return
        self._segmenter.end_now(self._received)  # its end is not a final: dropped
        if self._utterance is not None:
            self._drop_speculation(cancel=True)
            self._ready_finals[self._utterance] = []
            self._partial_sent.pop(self._utterance, None)
            self._utterance = None
        self._trim(self._received)
        self._release_finals()

    def control(self, message: str | Configure) -> None:
        """A parsed control message (``protocol.parse_control_message``)."""
        if isinstance(message, Configure):
            self.configure(message)
        elif message == "finalize":
            self.finalize()
        elif message == "close_stream":
            self.close_stream()
        elif message == "clear":
            self.clear()
        # keepalive: nothing to do

    def close_stream(self) -> None:
        """No more audio: finalize everything, then ``closed`` when all finals are out."""
        if self.closing:
            return
        self._append(self._decoder.flush())
        self.finalize()
        self.closing = True
        self._maybe_closed()

    def receive_transcript(self, request: TranscriptionRequest, transcript: Transcript) -> None:
        if request.priority is Priority.FINAL:
            if request is self._speculative:
                self._speculative_result = transcript  # used if the pause is the endpoint
                self._maybe_eager()
                return
            if self._pending_finals.get(request.utterance) is not request:
                # A speculative final whose pause was not the end: still a good partial.
                if self.options.interim_results:
                    self._send_partial(request, transcript)
                return
            if transcript.text:
                self._language_hint = transcript.language
            self._ready_finals[request.utterance] = self._final_messages(request, transcript)
            self._pending_finals.pop(request.utterance, None)
            self._release_finals()
        else:
            self._send_partial(request, transcript)

    def _send_partial(self, request: TranscriptionRequest, transcript: Transcript) -> None:
        if not (self._partial_is_current(request) and transcript.text):
            return
        self._partial_sent[request.utterance] = request.id
        self._messages.append(
            {
                "type": "partial",
                "utterance": request.utterance,
                "start": round(request.start, 3),
                "end": round(request.start + request.duration, 3),
                "text": transcript.text,
            }
        )

    # -- outputs ------------------------------------------------------------------------
    def requests_to_engine(self) -> list[TranscriptionRequest]:
        requests, self._requests = self._requests, []
        return requests

    def requests_to_cancel(self) -> list[TranscriptionRequest]:
        """Speculative finals made moot by more speech: drop them if still queued."""
        cancelled, self._cancelled = self._cancelled, []
        return cancelled

    def messages_to_send(self) -> list[dict[str, Any]]:
        messages, self._messages = self._messages, []
        return messages

    @property
    def audio_seconds(self) -> float:
        return self._received / SAMPLE_RATE

    # -- internals ----------------------------------------------------------------------
    def _append(self, samples: np.ndarray) -> None:
        if len(samples) == 0:
            return
        self._buffer.append(samples)
        self._received += len(samples)
        probabilities = self._vad.process(samples)
        self._boundaries(self._segmenter.feed(probabilities.tolist()))
        if self._utterance is None:
            self._trim(self._received - self._lookback)
        else:
            self._maybe_speculate()
            self._maybe_partial()

    def _boundaries(self, boundaries: list[UtteranceStart | UtteranceEnd]) -> None:
        for boundary in boundaries:
            if isinstance(boundary, UtteranceStart):
                self._open(boundary.start)
            else:
                self._close(boundary.end)

    def _open(self, start: int) -> None:
        self._utterance = self._next_utterance
        self._next_utterance += 1
        self._utterance_start = max(start, self._buffer.start)
        self._last_partial_at = self._utterance_start
        self._utterance_prompt = effective_prompt(self._prompt, self._keyterms)
        self._utterance_language = self._language
        self._messages.append(
            {
                "type": "speech_started",
                "utterance": self._utterance,
                "start": round(self._utterance_start / SAMPLE_RATE, 3),
            }
        )

    def _close(self, end: int) -> None:
        if self._utterance is None:
            return
        end = min(end, self._received)
        speculative, result, speculative_end = (
            self._speculative,
            self._speculative_result,
            self._speculative_end,
        )
        self._drop_speculation(cancel=False)
        if speculative is not None and speculative_end == end:
            # The pause was the endpoint: the early request covers exactly this audio.
            request = speculative
        else:
            if speculative is not None:
                self._cancelled.append(speculative)
            request = self._request(Priority.FINAL, end)
            self._requests.append(request)
            result = None
        self._pending_finals[request.utterance] = request
        self._utterance = None
        self._trim(end)
        if result is not None:
            self.receive_transcript(request, result)

    def _maybe_speculate(self) -> None:
        """Request the final as soon as a pause is long enough to maybe be the endpoint,
        so decoding overlaps the rest of the endpointing wait."""
        speculate_after_s = self.endpointing.speculate_after_s
        if speculate_after_s is None:
            return
        end = self._segmenter.likely_end(round(speculate_after_s * SAMPLE_RATE))
        if self._speculative is not None:
            if end == self._speculative_end:
                return
            self._drop_speculation(cancel=True)  # speech resumed: that pause was not the end
        if end is None:
            return
        self._speculative = self._request(Priority.FINAL, end)
        self._speculative_end = end
        self._requests.append(self._speculative)

    def _drop_speculation(self, *, cancel: bool) -> None:
        if cancel and self._speculative is not None:
            self._cancelled.append(self._speculative)
            if self._eager_sent:
                self._messages.append(
                    {"type": "turn_resumed", "utterance": self._speculative.utterance}
                )
        self._speculative = None
        self._speculative_result = None
        self._eager_sent = False

    def _maybe_eager(self) -> None:
        """``eager_end_of_turn`` for an answered speculation, once every earlier final is
        out (so it never overtakes them); never for an engine failure."""
        request, result = self._speculative, self._speculative_result
        if (
            not self.options.eager_eot
            or request is None
            or result is None
            or result.error
            or self._eager_sent
            or self._next_final_out != request.utterance
        ):
            return
        self._eager_sent = True
        self._messages.append(
            {
                "type": "eager_end_of_turn",
                "utterance": request.utterance,
                "text": result.text,
                "start": round(request.start, 3),
                "end": round(request.start + request.duration, 3),
            }
        )

    def _maybe_partial(self) -> None:
        if not self.options.interim_results or self._utterance is None:
            return
        if self._segmenter.state is not State.SPEECH:
            # Trailing silence: the final is probably next; a partial now would only
            # hold the engine up in front of it.
            return
        now = self._received
        if now - self._last_partial_at < self.tuning.partial_interval_s * SAMPLE_RATE:
            return
        if now - self._utterance_start < self.tuning.min_partial_s * SAMPLE_RATE:
            return
        self._last_partial_at = now
        self._requests.append(self._request(Priority.PARTIAL, now))

    def _request(self, priority: Priority, end: int) -> TranscriptionRequest:
        assert self._utterance is not None
        return TranscriptionRequest(
            audio=self._buffer.span(self._utterance_start, end),
            priority=priority,
            language=self._utterance_language,
            language_hint=self._language_hint,
            prompt=self._utterance_prompt,
            word_timestamps=self.options.word_timestamps and priority is Priority.FINAL,
            owner=self.id,
            utterance=self._utterance,
            start=self._utterance_start / SAMPLE_RATE,
        )

    def _trim(self, before: int) -> None:
        self._buffer.trim(before)

    def _partial_is_current(self, request: TranscriptionRequest) -> bool:
        # A result may arrive after newer partials were requested: still worth showing,
        # unless a newer one was already shown or the utterance is over.
        return (
            request.utterance == self._utterance
            and request.id > self._partial_sent.get(request.utterance, -1)
            and not self.closing
        )

    def _final_messages(
        self, request: TranscriptionRequest, transcript: Transcript
    ) -> list[dict[str, Any]]:
        message: dict[str, Any] = {
            "type": "final",
            "utterance": request.utterance,
            "start": round(request.start, 3),
            "end": round(request.start + request.duration, 3),
            "text": transcript.text,
            "language": transcript.language,
        }
        if request.word_timestamps:
            message["words"] = [
                {
                    "word": w.word,
                    "start": round(request.start + w.start, 3),
                    "end": round(request.start + w.end, 3),
                    "probability": round(w.probability, 4),
                }
                for w in transcript.words
            ]
        if transcript.error:
            # The engine failed this utterance: say so right before its (empty) final.
            error = error_message("engine_error", transcript.error, utterance=request.utterance)
            return [error, message]
        return [message]

    def _release_finals(self) -> None:
        while self._next_final_out in self._ready_finals:
            self._messages.extend(self._ready_finals.pop(self._next_final_out))
            self._partial_sent.pop(self._next_final_out, None)
            self._next_final_out += 1
        self._maybe_eager()
        self._maybe_closed()

    def _maybe_closed(self) -> None:
        if self.closing and not self.closed and self._next_final_out == self._next_utterance:
            self.closed = True
            self._messages.append({"type": "closed"})
