"""Python SDK for file transcription jobs (``/v1/jobs``); ``client.py`` is for streams.

Example::

    with JobsClient("http://127.0.0.1:8000") as jobs:
        job_id = jobs.submit("meeting.m4a", language="en")
        job = jobs.wait(job_id)  # polls until done, failed or cancelled
        print(jobs.result(job_id, format="srt"))
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

TERMINAL = frozenset({"done", "failed", "cancelled"})


class JobError(RuntimeError):
    """The server refused a request; ``status`` is the HTTP status, ``body`` its JSON."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class JobsClient:
    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
        timeout: float = 300.0,
    ) -> None:  # fmt: skip
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def submit(
        self,
        file: str | Path,
        *,
        language: str | None = None,
        prompt: str | None = None,
        word_timestamps: bool = False,
    ) -> str:
        """Upload ``file``; the job id (the job is durably queued when this returns)."""
        data = {"word_timestamps": "true" if word_timestamps else "false"}
        if language:
            data["language"] = language
        if prompt:
            data["prompt"] = prompt
        path = Path(file)
        with path.open("rb") as f:
            body = self._check(
                self._http.post("/v1/jobs", files={"file": (path.name, f)}, data=data)
            )
        return str(body["job_id"])

    def status(self, job_id: str) -> dict[str, Any]:
        """The job as ``GET /v1/jobs/{id}`` shows it (``result`` included once done)."""
        body: dict[str, Any] = self._check(self._http.get(f"/v1/jobs/{job_id}"))
        return body

    def result(self, job_id: str, format: str = "json") -> Any:
        """The transcript: a dict for ``json``, else the text of text/srt/vtt."""
        response = self._http.get(f"/v1/jobs/{job_id}/result", params={"format": format})
        if format == "json":
            return self._check(response)
        self._check(response, json=False)
        return response.text

    def cancel(self, job_id: str) -> str:
        """Cancel a queued or running job, or delete an ended one; what was done."""
        return str(self._check(self._http.delete(f"/v1/jobs/{job_id}"))["status"])

    def wait(self, job_id: str, *, timeout: float = 3600.0, poll: float = 0.5) -> dict[str, Any]:
        """Poll until the job ends; its final status (check ``status`` for ``done``)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.status(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(poll)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def _check(response: httpx.Response, *, json: bool = True) -> Any:
        if response.is_error:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise JobError(response.status_code, body)
        return response.json() if json else None
