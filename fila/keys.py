"""Redis key and pub/sub channel names, all behind the configured prefix.

Redis Cluster runs a script, a MULTI or a multi-key command only on keys of one hash slot, and
a key's slot is the hash of its `{tag}` when it has one. Keys that move together share a tag:

- `{bucket}`: the token bucket (global, per-instance shares, active set, weights, weight sum),
  one admission script reads and writes them all at once.
- `{feedback}`: every feedback session, the due-time sorted set and the feedback counters; each
  state change of a session is one script over the three.
- `{cleanup}`: the cleanup lock and its progress hash, extended and released in one script.
- `{workers}`: worker registrations, read with one MGET by the fleet views and health checks.
- `{<instance>}`: an instance's object-name stamp and its events' claimed names (one script).

Everything else is read and written one key at a time (or in non-atomic pipelines, which the
cluster client splits by node), so it has no tag and spreads over the cluster. An instance name
that begins with `}` would break its tag; Evolution instance names do not.
"""

from __future__ import annotations


class Keys:
    """Names of everything Fila keeps in Redis; one instance per prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    # --- pub/sub ---
    @property
    def control_channel(self) -> str:
        """Control plane → workers: config changed, pause, resume, drain, shutdown."""
        return f"{self.prefix}control"

    # --- effective configuration (mirror of PostgreSQL, read by workers) ---
    @property
    def config_filters(self) -> str:
        """Hash instance → AudioFilter JSON."""
        return f"{self.prefix}config:filters"

    @property
    def config_ratelimit(self) -> str:
        """RateLimitConfig JSON."""
        return f"{self.prefix}config:ratelimit"

    @property
    def config_webhook(self) -> str:
        """WebhookConfig JSON."""
        return f"{self.prefix}config:webhook"

    @property
    def config_emergency(self) -> str:
        """EmergencyFilter JSON."""
        return f"{self.prefix}config:emergency"

    @property
    def config_seq(self) -> str:
        """Counter that numbers control messages."""
        return f"{self.prefix}config:seq"

    # --- token bucket: one admission script touches all of these, so they share the
    # `{bucket}` hash tag and land in one Redis Cluster slot ---
    @property
    def bucket_global(self) -> str:
        return f"{self.prefix}{{bucket}}:global"

    def bucket_instance(self, instance: str) -> str:
        """The instance's fair-share bucket (and its defer slot clock)."""
        return f"{self.prefix}{{bucket}}:share:{instance}"

    @property
    def bucket_active(self) -> str:
        """Sorted set instance → last admission request (ms), the instances sharing the refill."""
        return f"{self.prefix}{{bucket}}:active"

    @property
    def bucket_active_weights(self) -> str:
        """Hash instance → weight, for the members of `bucket_active`."""
        return f"{self.prefix}{{bucket}}:active:weights"

    @property
    def bucket_active_weight_sum(self) -> str:
        """Sum of `bucket_active_weights`, kept by the script as members come and go."""
        return f"{self.prefix}{{bucket}}:active:sum"

    # --- counters ---
    @property
    def stats_global(self) -> str:
        """Hash of global counters (see `fila.stats.FIELDS`)."""
        return f"{self.prefix}stats:global"

    def stats_instance(self, instance: str) -> str:
        return f"{self.prefix}stats:instance:{instance}"

    def processed_day(self, day: str) -> str:
        """Deliveries on a day (YYYY-MM-DD in the configured timezone)."""
        return f"{self.prefix}stats:processed:{day}"

    @property
    def instances(self) -> str:
        """Sorted set instance → last seen (epoch seconds)."""
        return f"{self.prefix}instances"

    @property
    def recent_errors(self) -> str:
        """List of the latest queue.error reasons (JSON), newest first, capped."""
        return f"{self.prefix}stats:recenterrors"

    @property
    def non_audio(self) -> str:
        """Hash message type → count of non-audio events acknowledged."""
        return f"{self.prefix}stats:nonaudio"

    # --- idempotency ---
    def seen(self, message_id: str) -> str:
        """Set once an event is queued on global.messages (value: the JSON body queued)."""
        return f"{self.prefix}seen:{message_id}"

    # --- fleet ---
    def worker(self, worker_id: str) -> str:
        """Hash describing a worker, refreshed on each heartbeat (expires on silence)."""
        return f"{self.prefix}{{workers}}:worker:{worker_id}"

    @property
    def workers(self) -> str:
        """Sorted set worker id → last heartbeat (epoch seconds)."""
        return f"{self.prefix}workers"

    @property
    def paused(self) -> str:
        """Present while consumption is paused fleet-wide (survives worker restarts)."""
        return f"{self.prefix}fleet:paused"

    # --- feedback sessions ---
    def feedback_session(self, session_id: str) -> str:
        return f"{self.prefix}{{feedback}}:session:{session_id}"

    @property
    def feedback_sessions(self) -> str:
        """Sorted set session id → next tick due (epoch ms)."""
        return f"{self.prefix}{{feedback}}:sessions"

    @property
    def feedback_stats(self) -> str:
        return f"{self.prefix}{{feedback}}:stats"

    # --- locks ---
    def lock(self, name: str) -> str:
        """Tagged by its name, so what a lock guards can share its slot (`cleanup_progress`)."""
        return f"{self.prefix}lock:{{{name}}}"

    # --- S3 cleanup ---
    @property
    def cleanup_progress(self) -> str:
        """Hash scanned/deleted/errors of the cleanup running now (absent when none runs)."""
        return f"{self.prefix}cleanup:{{cleanup}}:progress"

    def cleanup_fired(self, fire: str) -> str:
        """Claimed by the one replica that runs the scheduled cleanup of `fire` (local time)."""
        return f"{self.prefix}cleanup:fired:{fire}"

    # --- S3 object names (one claim script touches both) ---
    def object_stamp(self, instance: str) -> str:
        """The instance's last object-name stamp (ms), so its names only go forward."""
        return f"{self.prefix}ingest:object:{{{instance}}}:stamp"

    def event_object(self, instance: str, idem: str) -> str:
        """The object name claimed by event `idem` of `instance` (the same on redelivery)."""
        return f"{self.prefix}ingest:object:{{{instance}}}:event:{idem}"

    # --- delivery circuit breakers ---
    @property
    def breakers(self) -> str:
        """Hash endpoint URL → BreakerState JSON, shared by every delivery worker."""
        return f"{self.prefix}breakers"

    def latency(self, name: str) -> str:
        """Hash of histogram bucket counts (+ `sum`) for a latency named `name`."""
        return f"{self.prefix}latency:{name}"

    @property
    def filter_snapshot(self) -> str:
        """Filter counters as last reported in `filter.applied` (deltas are sent from here)."""
        return f"{self.prefix}monitoring:filter-snapshot"
