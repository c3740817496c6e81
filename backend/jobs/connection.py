"""Redis connections: a real server, or the embedded in-memory stand-in.

The embedded mode uses fakeredis' shared in-memory server, so the API and the worker threads of one
`biaslab serve` process run exactly the same rq code as a scaled-out deployment.

Two kinds of client for a real server, because they want opposite things from an outage:
- "api" (requests, the sweeper, heartbeats): short timeouts and one retry, so a request answers 503
  within about a second and a sweeper sees the outage as errors rather than a long silence;
- "worker" (rq's own connection): retries for as long as Redis is away, so a job that is running
  keeps running through an outage of any length and records its progress and result once Redis is
  back, instead of failing on the first lost progress update.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from backend.config import Settings

Role = Literal["api", "worker"]
RQ_VERSION_FOR_FAKEREDIS = (5, 0, 9)  # what rq assumes when INFO fails (rq.utils.get_version)


@lru_cache
def _fake_server():  # type: ignore[no-untyped-def]
    import fakeredis

    return fakeredis.FakeServer()


def _embedded_client() -> redis.Redis:
    import fakeredis

    client = fakeredis.FakeRedis(server=_fake_server())
    # fakeredis has no INFO, so rq asked for the server's version before every dequeue, got an error,
    # and took Redis 5's commands. Cache that answer where rq caches it per connection. Not fakeredis'
    # own version: with Redis >= 6.2 rq dequeues with BLMOVE, which fakeredis (2.41) answers at once
    # instead of blocking, so an idle worker would spin.
    setattr(client, "__rq_redis_server_version", RQ_VERSION_FOR_FAKEREDIS)
    return client


def connect(redis_url: str | None, *, role: Role = "worker", settings: Settings | None = None) -> redis.Redis:
    """A client for `redis_url`, or for the process-wide embedded server when it is None."""
    if redis_url is None:
        return _embedded_client()
    if role == "api":
        connect_s = settings.redis_connect_timeout_s if settings else 0.5
        socket_s = settings.redis_socket_timeout_s if settings else 0.5
        # One quick retry covers a pooled connection that went stale when Redis restarted; a
        # timeout (Redis frozen or overloaded) is not retried, so it costs one socket timeout.
        return redis.Redis.from_url(
            redis_url,
            retry=Retry(
                ExponentialBackoff(cap=0.1, base=0.05), retries=1, supported_errors=(redis.ConnectionError,)
            ),
            socket_connect_timeout=connect_s,
            socket_timeout=socket_s,
            socket_keepalive=True,
        )
    # retries=-1: retry forever, with backoff capped at 2 s. rq sets this client's socket timeout
    # above its blocking dequeue timeout itself.
    return redis.Redis.from_url(
        redis_url,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=-1),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=10,
        socket_connect_timeout=2,
        socket_keepalive=True,
    )
