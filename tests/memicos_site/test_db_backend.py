"""memicos_site/db: the health check that costs no round trip must still tell a dead connection from a live one, and
binary results must load as the text ones do."""

import time

import psycopg
import pytest
from django.db import DataError, connection, connections
from psycopg import pq

pytestmark = pytest.mark.django_db


@pytest.fixture
def own():
    """A connection of the test's own, outside the test's transaction, so that it may be killed."""
    wrapper = connections.create_connection("default")
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


def last_query(pid: int) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        return cur.fetchone()[0]


def test_a_live_connection_is_usable_without_sending_a_query(own):
    with own.cursor() as cur:
        cur.execute("SELECT 'the last statement'")
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    assert own.is_usable()
    assert last_query(pid) == "SELECT pg_backend_pid()"  # Django's own check would have sent SELECT 1


def test_a_terminated_backend_is_unusable_and_the_next_request_reconnects(own):
    with own.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    with connection.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while own.is_usable() and time.monotonic() < deadline:  # the FATAL message and the close take a moment
        time.sleep(0.01)
    assert not own.is_usable()
    own.health_check_done = False  # as at the start of a request
    own.close_if_health_check_failed()
    with own.cursor() as cur:  # a new connection, not a 503
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] != pid


def test_a_connection_left_in_a_failed_transaction_is_unusable(own):
    own.set_autocommit(False)
    with pytest.raises(DataError):
        with own.cursor() as cur:
            cur.execute("SELECT 1 / 0")
    assert not own.is_usable()
    own.rollback()
    own.set_autocommit(True)
    assert own.is_usable()


@pytest.mark.parametrize("use_tz", [True, False])
def test_binary_results_load_timestamps_and_json_as_the_text_ones_do(settings, use_tz):
    settings.USE_TZ = use_tz
    wrapper = connections.create_connection("default")  # reads USE_TZ when it connects
    try:
        sql = "SELECT TIMESTAMPTZ '2026-01-02 03:04:05+00', '{\"a\": [1, 2]}'::jsonb"
        wrapper.ensure_connection()
        text, binary = psycopg.Cursor(wrapper.connection), psycopg.Cursor(wrapper.connection)
        binary.format = pq.Format.BINARY  # as features.selectors._prepared_cursor asks
        expected = text.execute(sql).fetchone()
        got = binary.execute(sql).fetchone()
    finally:
        wrapper.close()
    assert got == expected and got[0].tzinfo == expected[0].tzinfo and isinstance(got[1], str)
    assert (expected[0].tzinfo is None) is (not use_tz)
