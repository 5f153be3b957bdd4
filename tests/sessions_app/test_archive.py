"""The database archive: its rows are committed before anything leaves Redis (durable
transactions), and a run deletes only the row it wrote itself."""

import pytest
from django.db import DatabaseError, connection, transaction

from convstore.exceptions import ArchiveConflict
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


def copy_of(cid, seqs, *, word="turn"):
    return archive.Copy(
        cid, "life", [{"role": "user", "content": f"{word} {s}", "seq": s} for s in seqs]
    )


def archived(cid):
    rows = ArchivedTurn.objects.filter(conversation_id=cid).order_by("seq")
    return [turn["content"] for turn in rows.values_list("turn", flat=True)]


def test_a_batch_is_copied_in_one_go_and_a_repeated_copy_adds_nothing():
    copies = [copy_of(f"c{n}", range(5)) for n in range(3)]

    assert archive.archive_many(copies) == {}
    assert archive.archive_many(copies) == {}, "the same turns again are no conflict"

    assert ArchivedTurn.objects.count() == 15
    assert archived("c1") == [f"turn {s}" for s in range(5)]


def test_a_conflict_in_a_batch_holds_back_that_session_only():
    clash = archive.Copy(
        "clash", "life", [{"role": "user", "content": "another life's turn", "seq": 2}]
    )
    archive.archive_turns(**clash._asdict())
    copies = [copy_of("before", range(4)), copy_of("clash", range(4)), copy_of("after", range(4))]

    failures = archive.archive_many(copies)

    assert list(failures) == ["clash"]
    assert isinstance(failures["clash"], ArchiveConflict)
    assert "other turns under seq 2" in str(failures["clash"])
    assert archived("clash") == ["another life's turn"], "nothing of the clashing copy committed"
    assert archived("before") == archived("after") == [f"turn {s}" for s in range(4)]


def test_a_turn_the_database_refuses_fails_its_session_only():
    # PostgreSQL's jsonb cannot hold a NUL character; SQLite's JSON text can.
    refused = archive.Copy("nul", "life", [{"role": "user", "content": "a\u0000b", "seq": 0}])
    copies = [copy_of("fine", range(3)), refused]

    failures = archive.archive_many(copies)

    assert archived("fine") == ["turn 0", "turn 1", "turn 2"]
    if connection.vendor == "postgresql":
        assert list(failures) == ["nul"]
        assert isinstance(failures["nul"], DatabaseError)
        assert not ArchivedTurn.objects.filter(conversation_id="nul").exists()
    else:
        assert failures == {}
        assert archived("nul") == ["a\u0000b"]
