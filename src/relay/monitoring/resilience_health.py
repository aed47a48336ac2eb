"""Health components of the resilience layer: the local spool and each circuit breaker.

``spool``: healthy while nothing waits for replay; warning while entries wait (an outage is
being ridden out) or the spool is half full; critical when it is full (new entries are refused)
or nearly so. ``pressure``: warning while CPU, memory or ``var/`` disk is under pressure.
``circuit:<name>``: healthy when closed, warning when half-open (a trial call is
under way) and when a task's outbound dependency (``http:*``) is open, critical when the broker's
or Redis's circuit is open (the process cannot do its work).
"""

from __future__ import annotations

from relay.monitoring.health import ComponentHealth
from relay.monitoring.levels import Component, Level, judge
from relay.resilience.breaker import Breakers
from relay.resilience.pressure import RESOURCES, PressureMonitor
from relay.resilience.spool import Spool

SPOOL_FILL = (0.5, 0.9)
"""Share of the spool's bound at which it warns and turns critical."""
CORE_CIRCUITS = frozenset({"broker", "redis"})


def spool_component(spool: Spool) -> Component:
    stats = spool.stats(rescan=True)
    warning, critical = SPOOL_FILL
    level = Level.CRITICAL if stats.full else judge(stats.fill, warning, critical)
    if stats.entries and level is Level.HEALTHY:
        level = Level.WARNING
    message = None
    if stats.full:
        message = "the local spool is full: entries are refused until replay frees room"
    elif stats.entries:
        message = f"{stats.entries} spooled entries wait for replay"
    return Component(
        "spool",
        level,
        value=round(stats.fill, 4),
        threshold={"warning": warning, "critical": critical},
        message=message,
        details=stats.as_dict(),
    )


def circuit_components(breakers: Breakers) -> list[Component]:
    components = []
    for name, info in sorted(breakers.details().items()):
        state = info["state"]
        if state == "open":
            level = Level.CRITICAL if name in CORE_CIRCUITS else Level.WARNING
        elif state == "half-open":
            level = Level.WARNING
        else:
            level = Level.HEALTHY
        components.append(
            Component(
                f"circuit:{name}",
                level,
                value=state,
                threshold={
                    "critical" if name in CORE_CIRCUITS else "warning": "open",
                    "fail_max": breakers.fail_max,
                },
                message=f"circuit {name} is {state}" if level is not Level.HEALTHY else None,
                details={"since": info["since"], "failures": info["failures"]},
            )
        )
    return components


def pressure_component(pressure: PressureMonitor) -> Component:
    """Warning while under resource pressure (low-priority queues shed, admission refusing)."""
    state = pressure.state
    sample = state.sample
    return Component(
        "pressure",
        Level.WARNING if state.active else Level.HEALTHY,
        value=list(state.hot),
        threshold={
            name: {"high": pressure.thresholds(name)[0], "low": pressure.thresholds(name)[1]}
            for name in RESOURCES
        },
        message=(
            "resource pressure: low-priority queues are shed and new work is refused"
            if state.active
            else None
        ),
        details={
            "enabled": pressure.settings.enabled,
            "since": state.since if state.active else None,
            **({name: round(sample.get(name), 4) for name in RESOURCES} if sample else {}),
        },
    )


def resilience_components(
    spool: Spool, breakers: Breakers, pressure: PressureMonitor | None = None
) -> list[Component]:
    """The spool's component, one per breaker this process has used, and resource pressure."""
    components = [spool_component(spool), *circuit_components(breakers)]
    if pressure is not None:
        components.append(pressure_component(pressure))
    return components


def basic_components(
    spool: Spool, breakers: Breakers, pressure: PressureMonitor | None = None
) -> list[ComponentHealth]:
    """The same components for ``/health``: failing only when critical."""
    return [
        ComponentHealth(
            c.name,
            c.level is not Level.CRITICAL,
            c.latency_ms,
            c.message if c.level is Level.CRITICAL else None,
            {k: v for k, v in c.as_dict().items() if k not in ("latency_ms", "message")},
        )
        for c in resilience_components(spool, breakers, pressure)
    ]
