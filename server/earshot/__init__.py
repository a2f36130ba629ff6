"""Earshot: a self-hosted, real-time speech-to-text server.

Layers, with dependencies pointing one way::

    listen (WebSocket adapter) ──> scheduler ──> engine (faster-whisper / CTranslate2)
          │
          └──> session (sans-I/O: audio decoding, VAD, endpointing, bookkeeping)

The session core imports neither a web framework nor the model; the engine knows
nothing of sockets.
"""

__version__ = "0.1.0"
