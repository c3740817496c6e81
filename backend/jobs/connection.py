"""Redis connections: a real server (with reconnect/retry), or the embedded in-memory stand-in.

The embedded mode uses fakeredis' shared in-memory server, so the API and the worker threads of one
`biaslab serve` process run exactly the same rq code as a scaled-out deployment.
"""

from __future__ import annotations

from functools import lru_cache

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


@lru_cache
def _fake_server():  # type: ignore[no-untyped-def]
    import fakeredis

    return fakeredis.FakeServer()


def connect(redis_url: str | None) -> redis.Redis:
    """A client for `redis_url`, or for the process-wide embedded server when it is None."""
    if redis_url is None:
        import fakeredis

        return fakeredis.FakeRedis(server=_fake_server())
    # Retry transient failures (e.g. a Redis restart) with backoff instead of failing the request.
    return redis.Redis.from_url(
        redis_url,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=8),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=10,
        socket_connect_timeout=5,
        socket_keepalive=True,
    )
