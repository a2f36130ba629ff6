"""Load generation and capacity measurement against a running ``/v1/listen``.

It lives in the package (not only in the repository's ``loadtest/`` folder) so that
``earshot loadtest`` works wherever Earshot is installed: operators measure the
machine they are about to buy more of. Layers::

    scenario (clips, seeded stream plans) ──> streams (asyncio sessions)
                                          └─> scoring (latency, lag, WER; pure)
    bench (one step: N streams → JSON) ──> capacity (ramp until the SLO breaks) ──> plot

``scenario`` and ``scoring`` do no I/O of their own, so the Locust user
(``loadtest/locustfile.py``, gevent) shares them with the asyncio runner.
"""
