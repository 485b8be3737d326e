"""The post-process handlers of inbound messages (``<CHANNEL>_INBOUND_POST_PROCESS``).

Each job carries the id of the message a webhook stored.  The handler loads that message and
checks it is the inbound message of the job's workspace and channel; a job that does not match
its message fails with an error that says why (and goes dead after its attempts) rather than
acting on the wrong row.  Then, in order:

1. Enrich the lead from its provider: an email lead of a workspace with an EmailBison API key
   and base URL is fetched with ``EmailBisonClient.fetch_lead`` and its name, company, title and
   status updated (``leads.enriched_at``).  Skipped when the lead was enriched since the message
   arrived (a retried job); a failed fetch is logged and the job carries on without it.
2. Classify the reply's sentiment with the model (purpose ``sentiment``) into one of
   ``SENTIMENTS``; any other answer counts as ``neutral``.  Stored on the message (once: a
   retried job reuses it) and on the lead.
3. Draft a reply where the sentiment calls for one (``DRAFT_FOR``; purpose ``draft``): one
   ``ai_drafts`` row per message (``ON CONFLICT (message_id) DO NOTHING``); a message that has
   one already is not drafted again.  The model answers in JSON mode with the reply and its
   confidence that the reply can go out unread (``parse_draft``).  For a workspace with
   auto-send on, ``scheduler.auto_send`` then decides, once, whether the draft sends itself
   after ``AUTO_SEND_DELAY_S``.
4. Tell the workspace's Slack channel about an interested lead (the provider flagged the reply,
   or the model classified it ``interested``): ``scheduler.lead_notifications``, at most one
   post per message.  Slack's verdict decides: ``not_sent`` gives the claim back and fails the
   job, to be retried; ``unknown`` is recorded on the message and never posted again by itself.

The model: with AI off (``OPENAI_API_KEY`` unset) steps 2 and 3 are skipped and the job
succeeds.  A model call that times out or fails fails the job so that the runner retries it
with backoff, except on the job's last attempt, where the job carries on without that step
rather than die for want of a classification.  Slack off (``SLACK_BOT_TOKEN`` unset) or a
workspace without a channel skips step 4.
"""

from __future__ import annotations

import dataclasses
import logging

import orjson

from clients import Clients
from clients.ai import AIClient, AIResult
from gateway.events import POST_PROCESS_JOB
from gateway.runtime import Runtime
from scheduler.auto_send import consider_auto_send
from scheduler.handlers import JobContext, JobDataError, register
from scheduler.lead_notifications import notify_interested_lead
from scheduler.messages import message_of
from scheduler.queue import Job
from sql import Row

log = logging.getLogger("hookgate.jobs")

SENTIMENTS = ("interested", "question", "not_interested", "out_of_office", "neutral")
DRAFT_FOR = frozenset({"interested", "question"})

SENTIMENT_SYSTEM = (
    "You classify a lead's reply to an outbound sales message. Answer with exactly one word: "
    "interested (wants to talk or buy), question (asks something before deciding), "
    "not_interested (declines or asks to stop), out_of_office (an automatic absence reply), "
    "or neutral (anything else)."
)
DRAFT_SYSTEM = (
    "You write the sales rep's answer to a lead's reply. Be brief (at most 80 words), warm and "
    "specific to what the lead wrote; answer their question or propose a time to talk. No "
    "subject line, no placeholders, no signature. Answer with a JSON object: "
    '{"reply": "<the message body>", "confidence": <a number from 0 to 1: how sure you are '
    "that this reply can be sent as it is, without a person reading it first>}."
)
# The most of a reply that goes into a prompt.
PROMPT_BODY_CHARS = 4000


class ModelUnavailable(RuntimeError):
    """A model call timed out or failed: the job fails so that the runner retries it."""


@dataclasses.dataclass(frozen=True, slots=True)
class DraftAnswer:
    body: str
    confidence: float | None  # the model's, in [0, 1]; None when it gave none it could mean


def parse_sentiment(answer: str | None) -> str:
    """The model's answer as one of ``SENTIMENTS``: one word, case, surrounding punctuation and
    a space or hyphen for the underscore forgiven; anything else is ``neutral``."""
    word = (answer or "").strip().strip(".!\"'`").strip().lower()
    word = word.replace("-", "_").replace(" ", "_")
    return word if word in SENTIMENTS else "neutral"


def parse_draft(answer: str) -> DraftAnswer | None:
    """The model's draft: a JSON object ``{"reply": …, "confidence": 0..1}``.  A plain-text
    answer (an OpenAI-compatible model that ignores JSON mode) is the reply itself, with no
    confidence, so it is never sent on its own; so is a confidence that is not a number in
    [0, 1].  ``None`` for JSON that holds no reply."""
    text = answer.strip()
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return DraftAnswer(text, None)
    reply = parsed.get("reply") if isinstance(parsed, dict) else None
    if not isinstance(reply, str) or not reply.strip():
        return None
    confidence = parsed.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        return DraftAnswer(reply.strip(), None)
    return DraftAnswer(reply.strip(), float(confidence) if 0 <= confidence <= 1 else None)


async def load_message(ctx: JobContext, job: Job, channel: str) -> Row:
    if job.message_id is None:
        raise JobDataError(f"{job.type} job {job.id} names no message")
    message = await message_of(ctx.runtime.db, job.message_id)
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


def _extra(message: Row, **more: object) -> dict[str, object]:
    return {
        "message_id": message["id"],
        "workspace_id": message["workspace_id"],
        "lead_id": message["lead_id"],
        **more,
    }


async def enrich_lead(runtime: Runtime, clients: Clients, workspace: Row, message: Row) -> None:
    """Step 1 (email leads of EmailBison workspaces; see the module docstring)."""
    if message["channel"] != "email" or message["lead_id"] is None or not message["lead_email"]:
        return
    if not (workspace["emailbison_api_key"] and workspace["emailbison_base_url"]):
        log.debug("lead not enriched: no EmailBison API key", extra=_extra(message))
        return
    enriched_at = message["lead_enriched_at"]
    if enriched_at is not None and enriched_at >= message["created_at"]:
        return
    result = await clients.emailbison.fetch_lead(workspace, message["lead_email"])
    if not result.ok or result.data is None:
        log.warning(
            "lead not enriched: EmailBison fetch failed",
            extra=_extra(message, error_class=result.error_class, error=result.error),
        )
        return

    def text(key: str) -> str | None:
        value = result.data.get(key) if result.data else None
        return value.strip() or None if isinstance(value, str) else None

    await runtime.db.execute(
        "enrich_lead",
        id=message["lead_id"],
        first_name=text("first_name"),
        last_name=text("last_name"),
        company=text("company"),
        title=text("title"),
        status=text("status"),
        now=runtime.clock(),
    )


def _model_answer(result: AIResult, job: Job, purpose: str, message: Row) -> str | None:
    """The answer's text; ``None`` when AI is off or, on the last attempt, when the call failed.
    Raises ``ModelUnavailable`` for a failed call while the job has attempts left."""
    if result.status == "ok":
        return result.text
    if result.status == "disabled":
        return None
    _model_failed(job, purpose, message, f"{result.status}: {result.error}")
    return None


def _model_failed(job: Job, purpose: str, message: Row, error: str) -> None:
    """Raises ``ModelUnavailable`` while the job has attempts left; on its last attempt logs,
    and the step is skipped."""
    if job.attempts < job.max_attempts:
        raise ModelUnavailable(f"{purpose} model call: {error}")
    log.warning(
        f"{purpose} skipped: the model failed on the job's last attempt",
        extra=_extra(message, error=error),
    )


def _reply_text(message: Row) -> str:
    subject = f"Subject: {message['subject']}\n\n" if message["subject"] else ""
    return subject + str(message["body"])[:PROMPT_BODY_CHARS]


async def classify(runtime: Runtime, ai: AIClient, job: Job, message: Row) -> str | None:
    """Step 2: the message's sentiment, from an earlier attempt or the model."""
    if message["sentiment"] is not None:
        return str(message["sentiment"])
    if not message["body"] or not ai.enabled:
        return None
    result = await ai.complete(
        purpose="sentiment",
        system=SENTIMENT_SYSTEM,
        prompt=_reply_text(message),
        workspace_id=message["workspace_id"],
    )
    answer = _model_answer(result, job, "sentiment", message)
    if answer is None:
        return None
    sentiment = parse_sentiment(answer)
    await runtime.db.execute("set_message_sentiment", id=message["id"], sentiment=sentiment)
    if message["lead_id"] is not None:
        await runtime.db.execute(
            "set_lead_sentiment", id=message["lead_id"], sentiment=sentiment, now=runtime.clock()
        )
    return sentiment


async def draft_reply(runtime: Runtime, ai: AIClient, job: Job, message: Row) -> int | None:
    """Step 3: the message's draft id (an earlier attempt's, or a new one)."""
    if message["draft_id"] is not None:
        return int(message["draft_id"])
    if not ai.enabled:
        return None
    name = " ".join(n for n in (message["lead_first_name"], message["lead_last_name"]) if n)
    company = f" at {message['lead_company']}" if message["lead_company"] else ""
    prompt = f"The lead{f' {name}' if name else ''}{company} wrote:\n\n{_reply_text(message)}"
    result = await ai.complete(
        purpose="draft",
        system=DRAFT_SYSTEM,
        prompt=prompt,
        workspace_id=message["workspace_id"],
        json_object=True,
    )
    answer = _model_answer(result, job, "draft", message)
    if answer is None:
        return None
    draft = parse_draft(answer)
    if draft is None:
        _model_failed(job, "draft", message, "the answer is JSON without a reply")
        return None
    row = await runtime.db.fetch_one(
        "insert_ai_draft",
        workspace_id=message["workspace_id"],
        message_id=message["id"],
        lead_id=message["lead_id"],
        body=draft.body,
        confidence=draft.confidence,
        now=runtime.clock(),
    )
    return None if row is None else int(row["id"])


async def post_process(ctx: JobContext, job: Job, channel: str) -> None:
    runtime = ctx.runtime
    clients = runtime.clients
    if clients is None:
        raise RuntimeError("the outbound clients are not open")
    message = await load_message(ctx, job, channel)
    workspace = await runtime.workspaces.get(message["workspace_id"])
    if workspace is None:
        raise JobDataError(f"workspace {message['workspace_id']} does not exist")
    await enrich_lead(runtime, clients, workspace, message)
    sentiment = await classify(runtime, clients.ai, job, message)
    draft_id = None
    if sentiment in DRAFT_FOR:
        draft_id = await draft_reply(runtime, clients.ai, job, message)
        if draft_id is not None:
            await consider_auto_send(runtime, workspace, draft_id)
    if message["interested"] or sentiment == "interested":
        await notify_interested_lead(runtime, clients, workspace, message, draft_id)
    log.info(
        "post-processed message",
        extra=_extra(
            message, job_id=job.id, job_type=job.type, sentiment=sentiment, draft_id=draft_id
        ),
    )


def _post_process_handler(channel: str) -> None:
    @register(POST_PROCESS_JOB[channel])
    async def handler(ctx: JobContext, job: Job) -> None:
        await post_process(ctx, job, channel)


for _channel in POST_PROCESS_JOB:
    _post_process_handler(_channel)
