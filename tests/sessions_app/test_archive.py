"""The database archive: its rows are committed before anything leaves Redis (durable
transactions), and a run deletes only the row it wrote itself."""

import pytest
from django.db import transaction

from sessions_app import archive
from sessions_app.models import ArchivedSession, ArchivedTurn
from sessions_app.services import compact_session, trim_history
from tests.sessions_app.factories import save_session
from tests.sessions_app.test_services import make_idle, policy, redis_seqs

pytestmark = pytest.mark.django_db

NESTED = "A durable atomic block cannot be nested within another atomic block"


def write_row(*, rev, next_seq):
    """The row of one incarnation of c1 archived whole, as a run writes it."""
    return archive.archive_session(
        conversation_id="c1",
        incarnation="first",
        state={"bot_id": "b"},
        rev=rev,
        next_seq=next_seq,
        size=10,
        seen=None,
    )


@pytest.mark.parametrize(
    ("rev", "next_seq"),
    [(1, 6), (2, 5), (2, 6)],
    ids=["turns appended since", "state written since", "both"],
)
def test_forget_session_leaves_a_row_another_run_rewrote(rev, next_seq):
    mine, created = write_row(rev=1, next_seq=5)
    assert created
    theirs, created = write_row(rev=rev, next_seq=next_seq)
    assert not created

    archive.forget_session(mine)

    kept = ArchivedSession.objects.get(conversation_id="c1")
    assert (kept.rev, kept.next_seq) == (rev, next_seq)
    archive.forget_session(theirs)
    assert not ArchivedSession.objects.exists()


def test_a_trim_inside_an_outer_transaction_refuses_and_moves_nothing(store):
    save_session(store, "c1", turns=30)

    with pytest.raises(RuntimeError, match=NESTED), transaction.atomic():
        trim_history("c1", keep=5)

    assert redis_seqs(store, "c1") == list(range(30))
    assert not ArchivedTurn.objects.exists()
    assert store.load("c1", window=None)["_turns"] == 30


def test_an_idle_archive_inside_an_outer_transaction_refuses_and_moves_nothing(store, redis_client):
    save_session(store, "c1", turns=5)
    make_idle(store, redis_client, "c1", seconds=3600)

    with pytest.raises(RuntimeError, match=NESTED), transaction.atomic():
        compact_session("c1", policy(idle_archive_after=600))
    with pytest.raises(RuntimeError, match=NESTED), transaction.atomic():
        write_row(rev=1, next_seq=5)

    assert redis_seqs(store, "c1") == list(range(5))
    assert not ArchivedTurn.objects.exists()
    assert not ArchivedSession.objects.exists()
