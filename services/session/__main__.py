"""session service process: ``python -m services.session``. It joins the bus, owns the
``("session", …)`` store prefix and answers its health ping; its domain handlers are their own issue."""

from shared.service import run_bare_service

if __name__ == "__main__":
    run_bare_service("session")
