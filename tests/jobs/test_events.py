"""Job endings (and starts) pushed to waiting requests: the subscriber wakes exactly the requests
waiting on that job, and for a start only those that asked for changes."""

from __future__ import annotations

import asyncio

import fakeredis

from backend.jobs.events import CHANNEL, STARTED_CHANNEL, JobEndings, announce_end, announce_start


def test_an_ending_wakes_the_requests_waiting_on_that_job_only() -> None:
    server = fakeredis.FakeServer()
    endings = JobEndings(lambda: fakeredis.FakeRedis(server=server)).start()
    publisher = fakeredis.FakeRedis(server=server)

    async def scenario() -> tuple[bool, bool, bool]:
        with endings.waiting("job-a") as a, endings.waiting("job-a") as a2, endings.waiting("job-b") as b:
            for _ in range(100):  # until the subscriber is listening (an ending before that is missed)
                if publisher.pubsub_numsub(CHANNEL)[0][1]:
                    break
                await asyncio.sleep(0.02)
            announce_end(publisher, "job-a")
            await asyncio.wait_for(a.wait(), 10)
            await asyncio.wait_for(a2.wait(), 10)
            await asyncio.sleep(0.2)  # job-b's waiter had its chance to be woken by mistake
            return a.is_set(), a2.is_set(), b.is_set()

    try:
        assert asyncio.run(scenario()) == (True, True, False)
        assert endings._waiters == {}  # every waiter removed itself
    finally:
        endings.stop()


def test_a_start_wakes_only_the_requests_that_asked_for_changes() -> None:
    server = fakeredis.FakeServer()
    endings = JobEndings(lambda: fakeredis.FakeRedis(server=server)).start()
    publisher = fakeredis.FakeRedis(server=server)

    async def scenario() -> tuple[bool, bool, bool]:
        with endings.waiting("job-a", starts=True) as change, endings.waiting("job-a") as end:
            for _ in range(100):
                if publisher.pubsub_numsub(STARTED_CHANNEL)[0][1]:
                    break
                await asyncio.sleep(0.02)
            announce_start(publisher, "job-a")
            await asyncio.wait_for(change.wait(), 10)
            await asyncio.sleep(0.2)  # the end-only waiter had its chance to be woken by mistake
            woken_by_start = end.is_set()
            announce_end(publisher, "job-a")
            await asyncio.wait_for(end.wait(), 10)
            return change.is_set(), woken_by_start, end.is_set()

    try:
        assert asyncio.run(scenario()) == (True, False, True)
        assert endings._waiters == {}
    finally:
        endings.stop()
