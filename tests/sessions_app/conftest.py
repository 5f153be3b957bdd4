from tests.sessions_app.admin_pages import sessions, staff  # noqa: F401  (the admin's fixtures)
