"""Load tests and capacity benchmarks for an Earshot server.

- ``locustfile.py``: a Locust user streaming real speech (``locust -f loadtest/locustfile.py``);
- ``python -m loadtest.bench``: N concurrent streams → JSON latencies, lag, WER;
- ``python -m loadtest.capacity`` (= ``earshot loadtest``): the capacity finder.

The logic lives in ``earshot.loadtest`` so that an installed ``earshot`` can measure a
machine without this checkout; these modules are the repository's entry points.
"""
