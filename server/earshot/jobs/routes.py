"""HTTP routes of the job API: ``/v1/jobs`` (asynchronous, durable) and, from
``openai_compat``, ``/v1/audio/transcriptions`` (synchronous)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from earshot.access import principal_of
from earshot.jobs.formats import FORMATS, MEDIA_TYPES, RENDERERS, to_json
from earshot.jobs.models import InvalidOption, JobOptions, JobStatus, QuotaExceeded, StoreFull
from earshot.jobs.openai_compat import openai_transcriptions
from earshot.jobs.service import service_of
from earshot.jobs.uploads import UploadError

JOB_FIELDS = frozenset({"language", "prompt", "word_timestamps"})


def jobs_routes() -> list[BaseRoute]:
    return [
        Route("/v1/jobs", submit_job, methods=["POST"]),
        Route("/v1/jobs/{job_id}", job_status, methods=["GET"]),
        Route("/v1/jobs/{job_id}", delete_job, methods=["DELETE"]),
        Route("/v1/jobs/{job_id}/result", job_result, methods=["GET"]),
        Route("/v1/audio/transcriptions", openai_transcriptions, methods=["POST"]),
    ]


def error(status: int, code: str, message: str, parameter: str | None = None) -> JSONResponse:
    body = {"error": code, "message": message}
    if parameter:
        body["parameter"] = parameter
    return JSONResponse(body, status_code=status)


async def submit_job(request: Request) -> Response:
    """Multipart: ``file`` plus optional ``language``, ``prompt``, ``word_timestamps``."""
    service = service_of(request)
    languages: frozenset[str] = request.app.state.runtime.engine.languages
    try:
        async with service.receive_upload(request) as upload:
            unknown = sorted(set(upload.fields) - JOB_FIELDS)
            if unknown:
                raise InvalidOption(unknown[0], f"unknown field {unknown[0]!r}")
            options = JobOptions.parse(
                upload.field("language"),
                upload.field("prompt"),
                upload.field("word_timestamps"),
                languages,
            )
            job = await service.submit(upload.path, upload.filename, options, principal_of(request))
    except UploadError as exc:
        return error(exc.status, exc.code, exc.message, exc.param)
    except InvalidOption as exc:
        return error(400, "invalid_parameter", str(exc), exc.param)
    except QuotaExceeded as exc:
        return error(429, "job_quota_exceeded", str(exc))
    except StoreFull as exc:
        response = error(503, "store_full", str(exc))
        response.headers["Retry-After"] = "30"
        return response
    return JSONResponse(
        {"job_id": job.id, "status": str(job.status)},
        status_code=202,
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


async def job_status(request: Request) -> Response:
    job = await service_of(request).get(request.path_params["job_id"], principal_of(request))
    if job is None:
        return error(404, "not_found", "no such job (unknown, deleted or expired)")
    return JSONResponse(job.public())


async def job_result(request: Request) -> Response:
    """``?format=json|text|srt|vtt``; 409 until the job is done."""
    fmt = request.query_params.get("format", "json")
    if fmt not in FORMATS:
        return error(400, "invalid_parameter", f"format must be one of {FORMATS}", "format")
    job = await service_of(request).get(request.path_params["job_id"], principal_of(request))
    if job is None:
        return error(404, "not_found", "no such job (unknown, deleted or expired)")
    if job.status is not JobStatus.DONE or job.result is None:
        message = f"job is {job.status}" + (f": {job.error}" if job.error else "")
        return error(409, "not_done", message)
    if fmt == "json":
        body = to_json(job.result, words=job.options.word_timestamps)
    else:
        body = RENDERERS[fmt](job.result)
    return Response(body, media_type=MEDIA_TYPES[fmt])


async def delete_job(request: Request) -> Response:
    """Cancel a queued or running job; delete an ended one."""
    job_id = request.path_params["job_id"]
    outcome = await service_of(request).cancel_or_delete(job_id, principal_of(request))
    if outcome is None:
        return error(404, "not_found", "no such job (unknown, deleted or expired)")
    return JSONResponse({"job_id": job_id, "status": outcome})
