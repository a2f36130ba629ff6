"""Wire dialects of the streaming API: thin adapters over one ``StreamSession``.

A dialect (``base.Dialect``) says how one protocol's handshake becomes
``SessionOptions`` and credentials, how its client text frames become session actions,
and how session messages become its frames. Everything else, the connection machinery
in listen.py (pacer, outbound buffer, state machine, sender and receiver, drain), the
scheduler, auth, per-key limits, admission and metrics, is shared.

- ``native``: Earshot's own ``/v1/listen`` (docs/protocol.md).
- ``deepgram``: Deepgram's live API at ``/deepgram/v1/listen`` (docs/deepgram.md);
  ``deepgram_rest``: its prerecorded ``POST /deepgram/v1/listen``.
- ``openai_realtime``: OpenAI's Realtime transcription sessions at
  ``/v1/realtime?intent=transcription`` (docs/openai-realtime.md), audio in text frames.
"""
