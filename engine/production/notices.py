"""What the production scheduler tells people: the outbox messages of its events, written in the event's transaction.

Each function takes the open transaction (``db``) in which the scheduler records the event (a fault pause
with its audit line, the day's budget found spent) and enqueues one message (engine.store.outbox.enqueue)
keyed by the event, so a retried step or a resumed worker adds nothing:

* ``paused_by_fault``: keyed by the run and its fault number (the run's ``faults`` count, raised in the
  same transaction), one message per fault, however long it lasts and however often the worker retries;
* ``budget_exhausted``: keyed by the UTC day only, one message per day whichever scheduler (a stopped one
  started again the same day spends from the same ledger) finds the budget spent first.
"""

from __future__ import annotations

from engine.store.outbox import enqueue, figure

#: the console page every production message links to
PAGE = "production"
#: who can act on a fault pause, and how (said in the message)
WHO_CAN_ACT = (
    "an operator, once the {what} answers again: Resume on the Production page or `python -m engine production "
    "resume` (the scheduler also retries by itself, 2 s doubling to 60 s); Stop ends it: `python -m engine "
    "production stop`"
)
#: topics (engine.store.outbox.TOPICS)
PAUSED_BY_FAULT = "production.paused_by_fault"
BUDGET_EXHAUSTED = "production.budget_exhausted"


def usd(value: float) -> str:
    """A sum of money to the cent, as the Production page shows it."""
    return f"${value:,.2f}"


def paused_by_fault(db, run_id: int, *, fault_no: int, what: str, reason: str, at: float) -> bool:
    """The scheduler paused because the ``what`` ("store" or "evaluator") went away; True when enqueued."""
    return enqueue(
        db,
        topic=PAUSED_BY_FAULT,
        key=f"production:{run_id}:fault:{fault_no}",
        subject=f"Production scheduler {run_id} paused: the {what} went away",
        facts={
            "scheduler": run_id,
            "fault of": what,
            "reason": reason,
            "batch in flight": "not counted: it is abandoned and its entities visited again after the resume",
            "who can act": WHO_CAN_ACT.format(what=what),
        },
        link=PAGE,
        at=at,
    )


def budget_exhausted(
    db,
    run_id: int,
    *,
    day: str,
    spent_usd: float,
    budget_usd: float,
    still_due: int,
    overdue: int,
    new: int,
    opens_at: str,
    at: float,
) -> bool:
    """The day's budget is spent (nothing due fits in what is left); True when enqueued (once per UTC day)."""
    return enqueue(
        db,
        topic=BUDGET_EXHAUSTED,
        key=f"production:budget_exhausted:{day}",
        subject=f"Production spent the day's budget ({usd(spent_usd)} of {usd(budget_usd)}, {day} UTC)",
        facts={
            "scheduler": run_id,
            "day (UTC)": day,
            "spent": usd(spent_usd),
            "budget": usd(budget_usd),
            "entities still due": figure(int(still_due)),
            "of which overdue": figure(int(overdue)),
            "of which new": figure(int(new)),
            "visits go on": f"when the next UTC day begins ({opens_at})",
            "a larger budget": "stop the scheduler and start it again with --budget-usd (today's spend carries over)",
        },
        link=PAGE,
        at=at,
    )
