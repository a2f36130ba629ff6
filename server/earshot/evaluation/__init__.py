"""Quality monitoring: golden-set WER offline and streamed, partial stability, latency,
and hallucinations on audio without speech (``earshot eval``).

``runner`` runs the passes, ``report`` writes and plots, ``command`` is the CLI.
"""
