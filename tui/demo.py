"""A deterministic fleet (no clock, no randomness): `fila tui --demo`, snapshots, benchmark."""

from __future__ import annotations

from fila.audiofilter import EmergencyFilter
from fila.deadletters import DeadLetter
from fila.history import ConfigChange, ConfigHistory
from fila.models import RateLimitConfig, WebhookTarget, WorkerInfo
from fila.views import (
    Alert,
    Busiest,
    DependencyHealth,
    FleetOverview,
    InstanceCount,
    InstanceRow,
    InstancesView,
    RateLimitStatus,
    RecentError,
)
from tui.contract import (
    CleanupProgress,
    CleanupSchedule,
    CleanupStatus,
    FeedbackSession,
    FeedbackStats,
    LastCleanup,
    ProcessStatus,
    WebhookConfigData,
    WebhookConfigResponse,
)
from tui.fleetdata import FleetData

EPOCH = 1_764_000_000.0
"""A fixed 'now' so that ages and heartbeats render the same every time."""


def instance_row(i: int, tick: int = 0) -> InstanceRow:
    """Instance `i` after `tick` seconds of a steady, made-up load."""
    received = (i * 37) % 900 + tick * (1 + i % 3)
    short = received // 9
    long_ = received // 47
    limited = (i % 11 == 0) * (received // 20)
    return InstanceRow(
        instance=f"inst-{i:03d}",
        received=received,
        processed=received - short - long_ - limited,
        tooShort=short,
        tooLong=long_,
        rateLimited=limited,
        tokens=float((i * 7) % 21),
        tokenCapacity=20,
        minDurationSeconds=3 + (i % 4 == 0) * 2,
        maxDurationSeconds=7200 if i % 5 else 600,
        enabled=i % 17 != 0,
        lastSeen=None if i % 13 == 0 else EPOCH + tick - (i * 29) % 7200,
    )


def instances(count: int = 500, tick: int = 0) -> InstancesView:
    return InstancesView(
        instances=[instance_row(i, tick) for i in range(count)], generatedAt=EPOCH + tick
    )


def workers() -> list[WorkerInfo]:
    out = []
    for n, role in enumerate(["ingest", "ingest", "delivery", "delivery"]):
        out.append(
            WorkerInfo(
                id=f"{role}-{n}",
                role="ingest" if role == "ingest" else "delivery",
                pid=4100 + n,
                host="fila-1",
                startedAt=EPOCH - 3600,
                lastBeat=EPOCH - n,
                inFlight=n * 3,
                processed=10_000 + n * 1234,
                failed=n,
                appliedSeq=42,
            )
        )
    return out


def overview(tick: int = 0) -> FleetOverview:
    return FleetOverview(
        timestamp=EPOCH + tick,
        queueSize=1200 + 40 * (tick % 10),
        ingestQueueSize=35,
        deadLetters=12,
        ingestDeadLetters=3,
        inRate=8.0 + tick % 5,
        outRate=7.5 + (tick * 3) % 4,
        processedToday=48_211,
        totals={
            "received": 61_034,
            "processed": 50_120,
            "tooShort": 7_210,
            "tooLong": 380,
            "rateLimited": 3_324,
            "deferred": 0,
            "delivered": 48_211,
        },
        rateLimitStatus=RateLimitStatus(tokens=37.0, capacity=500, refillRate="500/min"),
        workersAlive=4,
        workers=workers(),
        health=[
            DependencyHealth(name="redis", ok=True),
            DependencyHealth(name="rabbitmq", ok=True),
            DependencyHealth(name="postgres", ok=True),
            DependencyHealth(name="s3", ok=False, detail="timeout"),
        ],
        alerts=[
            Alert(level="critical", code="bucket_empty", message="global bucket below 10 %"),
            Alert(level="warning", code="queue_growing", message="queue grew 400 in 60 s"),
        ],
        busiest=Busiest(
            rejected=[
                InstanceCount(instance=f"inst-{i:03d}", count=900 - 70 * i) for i in range(5)
            ],
            filtered=[
                InstanceCount(instance=f"inst-{i:03d}", count=1500 - 90 * i) for i in range(3, 8)
            ],
            failed=[InstanceCount(instance="inst-044", count=12)],
        ),
        recentErrors=[
            RecentError(at=EPOCH + tick - 4, instance="inst-011", error="Rate limit exceeded"),
            RecentError(
                at=EPOCH + tick - 31, instance="inst-044", error="Ingest failed: media_not_found"
            ),
            RecentError(
                at=EPOCH + tick - 95, instance="inst-002", error="Delivery failed: http_500"
            ),
        ],
    )


def changes() -> ConfigHistory:
    """A few recorded configuration changes, newest first."""
    admin = "admin sha256:5f1c0a9e3b2d"
    rows = [
        ConfigChange(
            id=4,
            at="2025-11-24T14:05:00.000+00:00",
            route="POST /queue/pause",
            caller=admin,
            address="10.0.0.7",
            target="fleet",
            old={"paused": False},
            new={"action": "pause", "role": None, "paused": True},
        ),
        ConfigChange(
            id=3,
            at="2025-11-24T13:40:00.000+00:00",
            route="PUT /ratelimit",
            caller=admin,
            address="10.0.0.7",
            target="ratelimit",
            old={"capacity": 500, "refillPerMinute": 500.0},
            new={"capacity": 800, "refillPerMinute": 500.0},
        ),
        ConfigChange(
            id=2,
            at="2025-11-24T12:10:00.000+00:00",
            route="PUT /filters/audio/bulk",
            caller=admin,
            address="10.0.0.9",
            target="filters",
            instances=["inst-001", "inst-002"],
            old={"filters": {}},
            new={"minDurationSeconds": 5, "maxDurationSeconds": 600, "enabled": True},
        ),
        ConfigChange(
            id=1,
            at="2025-11-24T11:00:00.000+00:00",
            route="PUT /instance/{instance}/filters/audio",
            caller=admin,
            address="10.0.0.9",
            target="instance:inst-001",
            instances=["inst-001"],
            old={"minDurationSeconds": 3, "maxDurationSeconds": 7200, "enabled": True},
            new={"minDurationSeconds": 4, "maxDurationSeconds": 7200, "enabled": True},
        ),
    ]
    return ConfigHistory(changes=rows, count=len(rows))


def fleet(count: int = 500) -> FleetData:
    """Every screen's data, filled."""
    data = FleetData(
        instances=instances(count),
        workers=workers(),
        process=ProcessStatus(
            activeSessionsCount=2,
            activeSessions=[
                FeedbackSession(
                    sessionId="inst-001:5511999990001@s.whatsapp.net:ABC1",
                    instance="inst-001",
                    chatId="5511999990001@s.whatsapp.net",
                    messageId="ABC1",
                    processType="transcription",
                    startTime=EPOCH * 1000 - 65_000,
                    timeoutAt=EPOCH * 1000 + 535_000,
                    currentReaction="🔄",
                    runningFor=65_000,
                ),
                FeedbackSession(
                    sessionId="inst-002:5511999990002@s.whatsapp.net:ABC2",
                    instance="inst-002",
                    chatId="5511999990002@s.whatsapp.net",
                    messageId="ABC2",
                    processType="summary",
                    startTime=EPOCH * 1000 - 4_000,
                    timeoutAt=EPOCH * 1000 + 596_000,
                    currentReaction="⏳",
                    runningFor=4_000,
                ),
            ],
            stats=FeedbackStats(activeCount=2, totalStarted=311, averageProcessingTime=21_500),
        ),
        cleanup=CleanupStatus(
            enabled=True,
            nextExecution="2025-11-25T03:00:00-03:00",
            retentionDays=7,
            lastCleanup=LastCleanup(
                timestamp="2025-11-24T03:00:02-03:00", deletedCount=1830, errorCount=0
            ),
            running=CleanupProgress(scanned=800, deleted=350, errors=2),
        ),
        schedule=CleanupSchedule(),
        webhook=WebhookConfigResponse(
            data=WebhookConfigData(
                principal=WebhookTarget(enabled=True, url="https://hooks.example.com/audio"),
                monitoramento=WebhookTarget(enabled=True, url="https://ops.example.com/fila"),
                updatedAt="2025-11-24T10:00:00Z",
            )
        ),
        deadLetters=[
            DeadLetter(
                id=f"inst-{i:03d}:MSG{i}",
                queue="global.messages.dlq",
                stage="delivery",
                reason="http_500" if i % 2 else "expired",
                attempts=6 if i % 2 else 0,
                statusCode=500 if i % 2 else None,
                response=None,
                failedAt="2025-11-24T12:00:00+00:00",
                instance=f"inst-{i:03d}",
                body={},
            )
            for i in range(1, 6)
        ],
        ratelimit=RateLimitConfig(),
        emergency=EmergencyFilter(),
        changes=changes(),
    )
    for tick in range(-59, 1):
        data.add_overview(overview(tick))
    return data
