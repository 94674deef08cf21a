"""Session service process: ``python -m services.session``."""

from services.session.app import SERVICE, build
from services.session.settings import SessionSettings
from shared.service import run_service


def main() -> None:
    settings = SessionSettings()
    run_service(SERVICE, settings, build(settings))


if __name__ == "__main__":
    main()
