"""The notifier's subscription count, which lets a change with nobody subscribed cost nothing."""

from __future__ import annotations

from handoff.mcp.subscriptions import Notifier
from handoff.ports import Change


def test_the_bus_counts_live_subscriptions_and_a_repeated_unsubscribe_counts_once():
    notifier = Notifier()
    first = notifier.bus.subscribe(lambda event: None)
    second = notifier.bus.subscribe(lambda event: None)
    first()
    first()
    assert notifier.bus.subscriptions == 1
    second()
    assert notifier.bus.subscriptions == 0


def test_a_change_with_nobody_subscribed_starts_no_publishing_task():
    notifier = Notifier()
    notifier.on_change(Change("s", 1, "SessionRegistered", (), ()))  # no running loop needed: nothing to schedule
    assert not notifier._tasks  # noqa: SLF001 - the publishing tasks it holds
