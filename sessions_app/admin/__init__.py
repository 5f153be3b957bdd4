"""The sessions admin: the sessions in Redis (sessions.py) and the database archive (archive.py).

Importing the package registers both, as Django's admin autodiscovery expects of ``admin``.
"""

from sessions_app.admin import archive, sessions  # noqa: F401  (they register the admins)
