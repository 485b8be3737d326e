"""The randomized fault test's plan (tests/test_fault_random.py): a pure function of its seed.

Everything the test decides is drawn here from ``random.Random`` seeded with the seed alone:
which deliveries are posted when, with how many copies to which replicas; which database cuts and
worker kills happen when; what the fake AI answers and how slowly; what the fake Slack does with
each post; which drafts are sent and whether their echo comes before or after EmailBison's answer.
The fakes ask for their behaviour by (key, how many requests came before for that key), never by
arrival order across keys, so the same seed asks the same of every run.  Only the timing of the
processes is not the plan's.

Replay a failing run with ``HOOKGATE_FAULT_SEED=<seed> pytest -m fault tests/test_fault_random.py``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from typing import Literal

from tests.conftest import fixture_json

SEED_ENV = "HOOKGATE_FAULT_SEED"

WORKSPACES = 3
REPLIES = 110  # inbound replies: each a LEAD_REPLIED, some also a LEAD_INTERESTED
SENDS = 30  # outbound MANUAL_EMAIL_SENT / EMAIL_SENT of campaigns and people
UNREADABLE = 4  # authenticated EmailBison deliveries no parser can read (quarantined)
REPLY_WINDOW_S = 30.0  # when the replies are first posted
FAULT_WINDOW_S = (3.0, 45.0)
CUTS = 5
LEASE_S = 2  # the processes' JOB_LEASE_S
CUT_S = (3.0, 5.0)  # each longer than the lease
KILLS = 2
PROCESSES = ("serve-a", "serve-b", "worker")
REPLICAS = 2  # the serve processes, which take deliveries
SKEWED = "serve-b"  # its clock runs SKEW_S ahead for the whole run (libfaketime)
SKEW_S = 30
RECONNECTING = 0  # the workspace whose LinkedIn account comes back during the run

SENTIMENTS = ("interested", "question", "neutral", "not_interested", "out_of_office")
SENTIMENT_WEIGHTS = (20, 20, 30, 20, 10)
DRAFTED = frozenset({"interested", "question"})
TOKEN = re.compile(r"FT\d{4}")

SlackOutcome = Literal["ok", "late", "error_500", "drop", "rate_limited"]
# Every outcome but rate_limited may have posted the message.
MAY_HAVE_POSTED: frozenset[SlackOutcome] = frozenset({"ok", "late", "error_500", "drop"})
SLACK_OUTCOMES: tuple[SlackOutcome, ...] = ("ok", "late", "error_500", "drop", "rate_limited")
SLACK_WEIGHTS = (62, 10, 10, 8, 10)


@dataclasses.dataclass(frozen=True, slots=True)
class Post:
    """One delivery posted as ``len(replicas)`` concurrent copies, one to each replica named."""

    at: float  # seconds after the start
    workspace: int
    event: str
    key_column: str | None  # the identity column its message is stored under (None: unreadable)
    key: str
    body: bytes
    replicas: tuple[int, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Cut:
    at: float
    process: str
    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class Kill:
    at: float
    down_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class ReplyPlan:
    """One inbound reply and what happens to it."""

    index: int
    token: str
    workspace: int
    reply_id: str
    lead_email: str
    sentiment: str  # what the fake AI classifies it as
    flagged: bool  # EmailBison also sends LEAD_INTERESTED for it
    press: tuple[int, ...]  # replicas its draft's send is pressed on at once (empty: not sent)
    echo_before: bool  # the send's echo is posted before EmailBison answers the send
    echo_replicas: tuple[int, ...]

    @property
    def sent_id(self) -> str:
        """The id EmailBison gives the draft's send (its echo's ``reply.id``)."""
        return str(800_000 + self.index)


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    seed: int
    posts: tuple[Post, ...]
    cuts: tuple[Cut, ...]
    kills: tuple[Kill, ...]
    replies: tuple[ReplyPlan, ...]
    reconnect_at: float  # when workspace RECONNECTING's account is connected again

    def reply(self, token: str) -> ReplyPlan:
        return self.replies[int(token.removeprefix("FT"))]

    def by_reply_id(self, reply_id: str) -> ReplyPlan:
        """The reply whose inbound ``reply.id`` this is (``KeyError``: none is)."""
        for reply in self.replies:
            if reply.reply_id == reply_id:
                return reply
        raise KeyError(reply_id)

    def _rng(self, *key: object) -> random.Random:
        return random.Random("/".join(map(str, (self.seed, *key))))

    def ai_delay_s(self, token: str, purpose: str, n: int) -> float:
        """How long the fake AI takes over the ``n``-th call of ``purpose`` for ``token``."""
        return self._rng("ai-delay", token, purpose, n).uniform(0.3, 2.5)

    def ai_fails(self, token: str, purpose: str, n: int) -> bool:
        """Whether that call is answered 500."""
        return self._rng("ai-fails", token, purpose, n).random() < 0.05

    def slack_outcome(self, key: str, n: int) -> SlackOutcome:
        """What the fake Slack does with the ``n``-th post about ``key``."""
        return self._rng("slack", key, n).choices(SLACK_OUTCOMES, SLACK_WEIGHTS)[0]

    def send_delay_s(self, token: str) -> float:
        return self._rng("send-delay", token).uniform(0.1, 0.6)


def _reply_payload(event: str, reply_id: str, lead_email: str, text: str) -> bytes:
    """An EmailBison event whose ``data.reply`` is reply ``reply_id``: from the lead for an
    inbound event, to the lead for ``MANUAL_EMAIL_SENT``."""
    payload = fixture_json("emailbison/lead_replied.json")
    payload["event"]["type"] = event
    block = payload["data"]["reply"]
    block.update(id=int(reply_id), text_body=text, html_body=None)
    block["from_email_address" if event.startswith("LEAD_") else "primary_to_email_address"] = (
        lead_email
    )
    payload["data"]["lead"]["email"] = lead_email
    return json.dumps(payload).encode()


def echo_payload(reply: ReplyPlan, text: str) -> bytes:
    """EmailBison's ``MANUAL_EMAIL_SENT`` for the send of ``reply``'s draft."""
    return _reply_payload("MANUAL_EMAIL_SENT", reply.sent_id, reply.lead_email, text)


def _campaign_send(index: int) -> bytes:
    """EmailBison's ``EMAIL_SENT`` of a campaign's scheduled email."""
    payload = fixture_json("emailbison/email_sent.json")
    payload["data"]["scheduled_email"]["id"] = 700_000 + index
    payload["data"]["lead"]["email"] = f"lead{index % 23}@sends.example.com"
    return json.dumps(payload).encode()


def _copies(rng: random.Random) -> tuple[int, ...]:
    """Where the copies of one delivery go: 1 to 3 of them, each to a replica at random."""
    n = rng.choices((1, 2, 3), (50, 35, 15))[0]
    return tuple(rng.randrange(REPLICAS) for _ in range(n))


def make_plan(seed: int) -> Plan:
    rng = random.Random(seed)
    posts: list[Post] = []

    def post(
        at: float, workspace: int, event: str, column: str | None, key: str, body: bytes
    ) -> None:
        posts.append(Post(at, workspace, event, column, key, body, _copies(rng)))

    replies: list[ReplyPlan] = []
    for i in range(REPLIES):
        sentiment = rng.choices(SENTIMENTS, SENTIMENT_WEIGHTS)[0]
        pressed = sentiment in DRAFTED and rng.random() < 0.6
        reply = ReplyPlan(
            index=i,
            token=f"FT{i:04d}",
            workspace=rng.randrange(WORKSPACES),
            reply_id=str(100_000 + i),
            lead_email=f"lead{rng.randrange(40)}@replies.example.com",
            sentiment=sentiment,
            flagged=rng.random() < 0.35,
            press=_copies(rng) if pressed else (),
            echo_before=rng.random() < 0.5,
            echo_replicas=_copies(rng),
        )
        replies.append(reply)
        text = f"{reply.token}: thanks for the note, tell me more about the pricing."
        events = [("LEAD_REPLIED", rng.uniform(0, REPLY_WINDOW_S))]
        if rng.random() < 0.15:  # the provider delivers it again later
            events.append(("LEAD_REPLIED", events[0][1] + rng.uniform(1, 12)))
        if reply.flagged:  # before the reply, just after it, or after its job has finished
            when = rng.choice(((-3.0, -0.5), (0.5, 3.0), (6.0, 15.0)))
            events.append(("LEAD_INTERESTED", max(0.0, events[0][1] + rng.uniform(*when))))
        for event, at in events:
            body = _reply_payload(event, reply.reply_id, reply.lead_email, text)
            post(at, reply.workspace, event, "email_bison_reply_id", reply.reply_id, body)
    for j in range(SENDS):  # sends hookgate did not make: a campaign's, or a person's
        at, workspace = rng.uniform(0, REPLY_WINDOW_S), j % WORKSPACES
        if rng.random() < 0.5:
            key = str(700_000 + j)
            post(at, workspace, "EMAIL_SENT", "inboxxia_scheduled_email_id", key, _campaign_send(j))
        else:
            key = str(500_000 + j)
            body = _reply_payload("MANUAL_EMAIL_SENT", key, f"lead{j % 23}@sends.example.com", "")
            post(at, workspace, "MANUAL_EMAIL_SENT", "email_bison_reply_id", key, body)
    for k in range(UNREADABLE):
        body = json.dumps({"event": {"type": "LEAD_REPLIED"}, "data": {"reply": {"n": k}}}).encode()
        post(rng.uniform(0, REPLY_WINDOW_S), k % WORKSPACES, "LEAD_REPLIED", None, "", body)
    cuts: list[Cut] = []
    at = FAULT_WINDOW_S[0]
    for _ in range(CUTS):  # one process at a time
        cut = Cut(at + rng.uniform(0.5, 3.0), rng.choice(PROCESSES), rng.uniform(*CUT_S))
        cuts.append(cut)
        at = cut.at + cut.seconds
    kills = [Kill(rng.uniform(*FAULT_WINDOW_S), rng.uniform(0.5, 3.0)) for _ in range(KILLS)]
    return Plan(
        seed=seed,
        posts=tuple(sorted(posts, key=lambda p: p.at)),
        cuts=tuple(cuts),
        kills=tuple(sorted(kills, key=lambda kill: kill.at)),
        replies=tuple(replies),
        reconnect_at=rng.uniform(15.0, 30.0),
    )
