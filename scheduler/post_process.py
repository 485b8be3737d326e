"""The post-process handlers of inbound messages (``<CHANNEL>_INBOUND_POST_PROCESS``).

Each job carries the id of the message a webhook stored.  The handler loads that message and
checks it is the inbound message of the job's workspace and channel; a job that does not match
its message fails with an error that says why (and goes dead after its attempts) rather than
acting on the wrong row.  The outbound steps (enrichment, sentiment, draft, Slack) plug in here.
"""

from __future__ import annotations

import logging

from gateway.ingest import POST_PROCESS_JOB
from scheduler.handlers import JobContext, register
from scheduler.queue import Job
from sql import Row

log = logging.getLogger("hookgate.jobs")


class JobDataError(RuntimeError):
    """The job's data does not fit: retrying is unlikely to help, but the error is recorded."""


async def load_message(ctx: JobContext, job: Job, channel: str) -> Row:
    if job.message_id is None:
        raise JobDataError(f"{job.type} job {job.id} names no message")
    message = await ctx.runtime.db.fetch_one("job_message", id=job.message_id)
    if message is None:
        raise JobDataError(f"message {job.message_id} does not exist")
    if message["workspace_id"] != job.workspace_id:
        raise JobDataError(f"message {job.message_id} belongs to another workspace")
    if message["channel"] != channel or message["direction"] != "inbound":
        raise JobDataError(
            f"message {job.message_id} is {message['direction']} {message['channel']}, "
            f"not inbound {channel}"
        )
    return message


def _post_process_handler(channel: str) -> None:
    job_type = POST_PROCESS_JOB[channel]

    @register(job_type)
    async def post_process(ctx: JobContext, job: Job) -> None:
        message = await load_message(ctx, job, channel)
        log.info(
            "post-processed message",
            extra={
                "job_id": job.id,
                "job_type": job.type,
                "message_id": message["id"],
                "workspace_id": message["workspace_id"],
                "lead_id": message["lead_id"],
            },
        )


for _channel in POST_PROCESS_JOB:
    _post_process_handler(_channel)
