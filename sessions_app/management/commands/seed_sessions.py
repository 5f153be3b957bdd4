"""`manage.py seed_sessions`: write deterministic demo conversations to the store.

With --legacy they are written as the robot's old stdlib-json blobs instead, to try migration.
"""

from django.core.management.base import BaseCommand, CommandError

from sessions_app.demo import DEFAULT_SEED
from sessions_app.seeding import seed_sessions
from sessions_app.store import StoreError


class Command(BaseCommand):
    help = "Write demo conversations (Vietnamese and English turns) to the conversation store."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=10, help="sessions to write")
        parser.add_argument("--steps", type=int, default=60, help="scenario steps per session")
        parser.add_argument("--turns", type=int, default=200, help="history turns per session")
        parser.add_argument(
            "--legacy", action="store_true", help="write legacy stdlib-json blobs instead"
        )
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing when the store has sessions"
        )
        parser.add_argument("--prefix", default="demo-", help="conversation id prefix")
        parser.add_argument("--start", type=int, default=0, help="number of the first session")
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")

    def handle(self, *, count, steps, turns, legacy, if_empty, prefix, start, seed, **options):
        try:
            result = seed_sessions(
                count=count,
                steps=steps,
                turns=turns,
                legacy=legacy,
                if_empty=if_empty,
                prefix=prefix,
                start=start,
                seed=seed,
            )
        except (ValueError, StoreError) as e:
            raise CommandError(str(e)) from e
        if result.skipped:
            self.stdout.write("The store already holds sessions: nothing seeded.")
            return
        ids = result.conversation_ids
        span = f" ({ids[0]} .. {ids[-1]})" if ids else ""
        layout = "legacy JSON blobs" if legacy else "the split layout"
        self.stdout.write(
            f"Seeded {len(ids)} sessions{span} of {steps} steps and {turns} turns in {layout}."
        )
