"""A background job's lease: one holder at a time across nodes, taken over when its holder's session dies."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from modelport.store.leases import AdvisoryLease, open_lease

from .pg_support import fresh_database, need_psycopg

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url():
    need_psycopg()
    with fresh_database() as url:
        yield url


def test_one_holder_at_a_time_and_a_dead_holder_is_taken_over(database_url):
    import psycopg

    first, second = AdvisoryLease(database_url, "replicate-autopoll"), AdvisoryLease(database_url, "replicate-autopoll")
    try:
        assert first.held() and first.held()  # asked again: still its own
        assert not second.held()
        with psycopg.connect(database_url, autocommit=True) as admin:  # the holder's session dies (a node killed)
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'modelport-lease-replicate-autopoll' AND pid <> pg_backend_pid()")
        assert not first.held()  # its connection is gone, so is its lock: it stops the job
        deadline = time.monotonic() + 2
        while not second.held():  # the server drops the lock as the killed session ends
            assert time.monotonic() < deadline, "the lease of a dead holder was not taken over"
            time.sleep(0.02)
        assert not first.held()  # back, it finds the lease taken
    finally:
        for lease in (first, second):
            lease.close()


def test_a_lease_is_not_held_while_the_server_is_unreachable():
    lease = AdvisoryLease("postgresql://postgres@127.0.0.1:1/none", "replicate-autopoll")
    assert lease.held() is False


def test_the_embedded_store_has_one_node_which_always_holds_it():
    lease = open_lease(SimpleNamespace(database_url=None), "replicate-autopoll")
    assert lease.held()
    with pytest.raises(ValueError, match="unknown background job"):
        open_lease(SimpleNamespace(database_url=None), "nope")
