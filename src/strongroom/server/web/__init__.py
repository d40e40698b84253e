"""The web dashboard: users, sessions, CSRF, and the pages served at ``/``."""
