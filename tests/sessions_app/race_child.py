"""One process of a race: archives an idle session when the test says go.

Usage: python -m tests.sessions_app.race_child CID DATABASE_NAME GO_KEY guarded|unguarded
Prints one JSON line: the action taken, or the name of the error.
"""

import json
import os
import sys

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

import django
from django.conf import settings


def main(cid, database, go_key, mode):
    settings.DATABASES["default"]["NAME"] = database
    django.setup()
    from sessions_app import services
    from sessions_app.store import StoreError, get_store

    store = get_store()
    store.client.blpop([go_key], timeout=30)
    policy = services.CompactionPolicy(
        max_bytes=10**9, max_turns=10**6, keep_turns=10, idle_archive_after=1
    )
    try:
        if mode == "guarded":
            result = services.compact_session(cid, policy)
        else:  # as if the session guard had expired: nothing keeps the runs apart
            result = services.archive_idle(store, cid)
        print(json.dumps({"outcome": str(result.action)}))
    except StoreError as e:
        print(json.dumps({"outcome": type(e).__name__}))


if __name__ == "__main__":
    main(*sys.argv[1:])
