"""OpenAI Realtime transcription sessions end to end: the real ``openai`` SDK's realtime
client pointed at a real server (``websocket_base_url=ws://HOST:PORT/v1``), real speech,
transcripts checked by normalized WER."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import pytest
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemInputAudioTranscriptionDeltaEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RealtimeErrorEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)
from tests.dialect_helpers import keyed_server
from tests.fakes import pcm16
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from conftest import Clip
from earshot.auth import generate_key
from earshot.server_process import ServerProcess
from earshot.wer import error_rate

pytestmark = pytest.mark.filterwarnings(
    # The SDK's realtime client opens its socket with websockets' connect() called
    # directly, which websockets >= 17 deprecates (it still works).
    "ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"
)

KEY = generate_key()
ENGLISH = "ljspeech_LJ001-0001"
SHORT = "cmuarctic_a0024"
WER_BOUND = 0.12
"""As tests/test_deepgram.py: streaming splits at pauses; 0.12 catches lost audio."""
Completed = ConversationItemInputAudioTranscriptionCompletedEvent
Delta = ConversationItemInputAudioTranscriptionDeltaEvent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with keyed_server(tmp_path_factory, "openai", KEY, "--max-sessions", "2") as server:
        yield server


def client(server: ServerProcess, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=key,
        base_url=f"http://127.0.0.1:{server.port}/v1",
        websocket_base_url=f"ws://127.0.0.1:{server.port}/v1",
        max_retries=0,
    )


def mulaw(audio: np.ndarray) -> bytes:
    """G.711 μ-law (ITU-T): sign, 3-bit exponent, 4-bit mantissa, inverted."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(pcm), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


class Session:
    """One SDK connection; a reader thread collects every event the SDK parsed."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.events: list[Any] = []
        self.failure: Exception | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for event in self.connection:
                self.events.append(event)
        except Exception as exc:  # the test's assertions report it
            self.failure = exc

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, predicate: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert predicate(), (self.failure, [e.type for e in self.events])

    def append(self, data: bytes, bytes_per_second: int, *, speed: float = 3.0) -> None:
        step = bytes_per_second // 10  # 100 ms
        for i in range(0, len(data), step):
            chunk = base64.b64encode(data[i : i + step]).decode()
            self.connection.input_audio_buffer.append(audio=chunk)
            time.sleep(0.1 / speed)

    def update(self, audio_input: dict[str, Any]) -> SessionUpdatedEvent:
        before = len(self.of(SessionUpdatedEvent))
        self.connection.session.update(
            session={"type": "transcription", "audio": {"input": audio_input}}
        )
        self.wait_for(lambda: len(self.of(SessionUpdatedEvent)) > before)
        updated: SessionUpdatedEvent = self.of(SessionUpdatedEvent)[-1]
        return updated


def open_session(server: ServerProcess) -> Any:
    return client(server).realtime.connect(extra_query={"intent": "transcription"})


def transcript(session: Session) -> str:
    return " ".join(e.transcript for e in session.of(Completed)).strip()


def settled(session: Session) -> bool:
    """Every committed item has its transcript, and the last is a few events old."""
    committed = session.of(InputAudioBufferCommittedEvent)
    completed = {e.item_id for e in session.of(Completed)}
    return bool(committed) and all(c.item_id in completed for c in committed)


def test_server_vad_deltas_then_completed_pcm16_24khz(
    server: ServerProcess, speech: dict[str, Clip]
) -> None:
    clip = speech[ENGLISH]
    with open_session(server) as connection:
        session = Session(connection)
        session.wait_for(lambda: session.of(SessionCreatedEvent))
        created = session.of(SessionCreatedEvent)[0]
        assert created.session.type == "transcription"
        updated = session.update(
            {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                },
            }
        )
        audio_input = updated.session.audio.input
        assert audio_input.format.type == "audio/pcm"
        assert audio_input.turn_detection.silence_duration_ms == 500
        session.append(pcm16(clip.audio(24000)) + bytes(48000 * 2), 48000)
        session.wait_for(lambda: settled(session) and not _open_speech(session))
    events = session.events
    started = session.of(InputAudioBufferSpeechStartedEvent)
    stopped = session.of(InputAudioBufferSpeechStoppedEvent)
    committed = session.of(InputAudioBufferCommittedEvent)
    completed = session.of(Completed)
    assert started and len(started) == len(stopped) == len(committed) == len(completed)
    assert error_rate([clip.text], [transcript(session)]) <= WER_BOUND
    # One item per utterance, in order: started, (deltas), stopped, committed, completed.
    assert [s.item_id for s in started] == [c.item_id for c in committed]
    assert [c.item_id for c in committed] == [c.item_id for c in completed]
    assert committed[0].previous_item_id is None
    for before, after in itertools.pairwise(committed):
        assert after.previous_item_id == before.item_id
    for item in committed:
        kinds = [e.type for e in events if getattr(e, "item_id", None) == item.item_id]
        assert kinds[0] == "input_audio_buffer.speech_started"
        ending = [k for k in kinds if not k.endswith(".delta")][-3:]
        assert ending == [
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.input_audio_transcription.completed",
        ]
        assert kinds[-1] == ending[-1]
    deltas = session.of(Delta)
    assert deltas, "partials become deltas"
    for done in completed:
        # Deltas carry the words each partial added; where Whisper revised a word, they
        # stop (a delta can't take it back): the words they carried begin the transcript.
        carried = plain("".join(d.delta for d in deltas if d.item_id == done.item_id))
        assert carried == plain(done.transcript)[: len(carried)]
        assert done.usage.type == "duration" and done.usage.seconds > 0
        last_delta = max(
            (i for i, e in enumerate(events) if isinstance(e, Delta) and e.item_id == done.item_id),
            default=-1,
        )
        assert last_delta < events.index(done)
    ids = [e.event_id for e in events]
    assert len(set(ids)) == len(ids) and all(i.startswith("event_") for i in ids)
    assert all(s.audio_start_ms < t.audio_end_ms for s, t in zip(started, stopped, strict=True))


def plain(text: str) -> list[str]:
    return [w.strip(".,;:!?\"'").lower() for w in text.split()]


def _open_speech(session: Session) -> bool:
    return len(session.of(InputAudioBufferSpeechStartedEvent)) > len(session.of(Completed))


def test_manual_commits_and_clear(server: ServerProcess, speech: dict[str, Clip]) -> None:
    """``turn_detection: null``: nothing ends an utterance but the client's commit (no
    VAD events); ``clear`` drops what was appended; an empty commit is an error."""
    clip, other = speech[SHORT], speech["cmusphinx_cards-001"]
    with open_session(server) as connection:
        session = Session(connection)
        session.update({"turn_detection": None, "transcription": {"prompt": "Arctic reports."}})
        # Audio then a pause far longer than VAD's: still one uncommitted item.
        audio = pcm16(clip.audio(24000))
        session.append(audio + bytes(48000 * 2), 48000)
        time.sleep(1.0)
        assert not session.of(InputAudioBufferCommittedEvent)
        connection.input_audio_buffer.commit()
        session.wait_for(lambda: session.of(Completed))
        # Cleared audio is never transcribed.
        session.append(pcm16(other.audio(24000)), 48000)
        connection.input_audio_buffer.clear()
        session.wait_for(
            lambda: any(e.type == "input_audio_buffer.cleared" for e in session.events)
        )
        connection.input_audio_buffer.commit(event_id="empty-commit")
        session.wait_for(lambda: session.of(RealtimeErrorEvent))
        time.sleep(1.0)
    assert not session.of(InputAudioBufferSpeechStartedEvent)
    assert not session.of(InputAudioBufferSpeechStoppedEvent)
    committed = session.of(InputAudioBufferCommittedEvent)
    completed = session.of(Completed)
    assert len(committed) == len(completed) == 1
    assert committed[0].item_id == completed[0].item_id
    assert error_rate([clip.text], [completed[0].transcript]) <= 0.15
    error = session.of(RealtimeErrorEvent)[0].error
    assert error.code == "input_audio_buffer_commit_empty"
    assert error.event_id == "empty-commit" and error.type == "invalid_request_error"


def test_pcmu_at_8khz(server: ServerProcess, speech: dict[str, Clip]) -> None:
    clip = speech[SHORT]
    with open_session(server) as connection:
        session = Session(connection)
        updated = session.update(
            {"format": {"type": "audio/pcmu"}, "transcription": {"language": "en"}}
        )
        assert updated.session.audio.input.format.type == "audio/pcmu"
        session.append(mulaw(clip.audio(8000)) + bytes([0xFF]) * 8000, 8000)
        session.wait_for(lambda: settled(session) and not _open_speech(session))
    assert error_rate([clip.text], [transcript(session)]) <= 0.15


def test_the_beta_client_and_transcription_session_update(
    server: ServerProcess, speech: dict[str, Clip]
) -> None:
    """The SDK's beta realtime client (``client.beta.realtime``) still sends
    ``transcription_session.update`` with the beta field names."""
    clip = speech[SHORT]
    with client(server).beta.realtime.connect(
        model="gpt-4o-transcribe", extra_query={"intent": "transcription"}
    ) as connection:
        session = Session(connection)
        connection.transcription_session.update(
            session={
                "input_audio_format": "pcm16",
                "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 600},
            }
        )
        session.wait_for(lambda: _types(session, "transcription_session.updated"))
        (updated,) = _types(session, "transcription_session.updated")
        assert updated.session.input_audio_format == "pcm16"
        assert updated.session.turn_detection.silence_duration_ms == 600
        session.append(pcm16(clip.audio(24000)) + bytes(48000 * 2), 48000)
        session.wait_for(
            lambda: (
                _types(session, "conversation.item.input_audio_transcription.completed")
                and len(_types(session, "input_audio_buffer.speech_started"))
                == len(_types(session, "conversation.item.input_audio_transcription.completed"))
            )
        )
    completed = _types(session, "conversation.item.input_audio_transcription.completed")
    text = " ".join(e.transcript for e in completed)
    assert error_rate([clip.text], [text]) <= 0.15


def _types(session: Session, kind: str) -> list[Any]:
    return [e for e in session.events if e.type == kind]


def test_bad_events_answer_openai_errors_and_the_session_goes_on(server: ServerProcess) -> None:
    with open_session(server) as connection:
        session = Session(connection)
        connection.send({"type": "response.create", "event_id": "evt-1"})
        connection.send({"type": "input_audio_buffer.append", "audio": "not base64!!"})
        connection.session.update(
            session={
                "type": "transcription",
                "audio": {"input": {"format": {"type": "audio/opus"}}},
            }
        )
        session.wait_for(lambda: len(session.of(RealtimeErrorEvent)) >= 3)
        session.update({"transcription": {"language": "en"}})  # still open
    errors = [e.error for e in session.of(RealtimeErrorEvent)]
    assert errors[0].event_id == "evt-1" and errors[0].type == "invalid_request_error"
    assert errors[1].param == "audio"
    assert errors[2].param == "session.audio.input.format.type"
    assert all(e.message and e.code for e in errors)


def test_auth_refusal_and_client_secrets(server: ServerProcess, speech: dict[str, Clip]) -> None:
    with pytest.raises(InvalidStatus) as refused:
        client(server, generate_key()).realtime.connect(
            extra_query={"intent": "transcription"}
        ).enter()
    response = refused.value.response
    assert response.status_code == 401
    error = json.loads(response.body or b"{}")["error"]
    assert error["code"] and error["message"] and error["type"] == "invalid_request_error"

    secret = client(server).realtime.client_secrets.create(
        session={"type": "transcription", "audio": {"input": {"turn_detection": None}}},
        expires_after={"anchor": "created_at", "seconds": 600},
    )
    assert secret.value and secret.expires_at > time.time()
    assert secret.session.type == "transcription"
    # The secret as the SDK's api_key (Authorization: Bearer) ...
    with client(server, secret.value).realtime.connect(
        extra_query={"intent": "transcription"}
    ) as connection:
        session = Session(connection)
        session.wait_for(lambda: session.of(SessionCreatedEvent))
    # ... and as a browser sends it: no headers, the secret in the subprotocol list.
    url = f"ws://127.0.0.1:{server.port}/v1/realtime?intent=transcription"
    with ws_connect(
        url,
        subprotocols=["realtime", f"openai-insecure-api-key.{secret.value}"],
    ) as socket:
        assert socket.subprotocol == "realtime"
        assert json.loads(socket.recv(timeout=10))["type"] == "session.created"
    with (
        pytest.raises(InvalidStatus) as bad_secret,
        ws_connect(url, subprotocols=["realtime", "openai-insecure-api-key.nope"]),
    ):
        pass
    assert bad_secret.value.response.status_code == 401


def test_a_full_server_refuses_with_503(server: ServerProcess) -> None:
    """``--max-sessions 2``: the third handshake gets HTTP 503 in OpenAI's error shape."""
    with open_session(server) as first, open_session(server) as second:
        for connection in (first, second):
            session = Session(connection)
            session.wait_for(lambda: session.of(SessionCreatedEvent))  # noqa: B023
        with pytest.raises(InvalidStatus) as full:
            open_session(server).enter()
    response = full.value.response
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert json.loads(response.body or b"{}")["error"]["type"] == "server_error"
