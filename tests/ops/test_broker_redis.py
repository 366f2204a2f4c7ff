"""The Redis transport survives its Redis dying with messages unacknowledged."""

from __future__ import annotations

import shutil

import pytest
from kombu import Connection, Queue

from tests.processes import free_port, start_redis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


def close_after_redis_died(tmp_path, transport: str | None) -> None:
    """Close a channel holding an unacknowledged message after Redis died, as a worker's
    consumer does when it loses its broker (its transport has let go of the connection)."""
    port = free_port()
    redis = start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        with Connection(url) as publisher:
            publisher.SimpleQueue("work").put({"run": 1})
        connection = Connection(url, transport=transport)
        channel = connection.channel()
        queue = Queue("work", channel=channel)
        assert queue.get(no_ack=False) is not None  # delivered, not acknowledged
    finally:
        redis.kill()
        redis.wait()
    channel.connection.client = None
    channel.close()


def test_kombu_s_own_redis_channel_still_crashes_there_so_the_workaround_is_needed(tmp_path):
    with pytest.raises(AttributeError, match="hostname"):
        close_after_redis_died(tmp_path, None)


def test_the_dashboard_s_redis_channel_closes_without_restoring(tmp_path):
    close_after_redis_died(tmp_path, "dashboard.broker:RedisTransport")
