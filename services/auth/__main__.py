"""Auth service process: ``python -m services.auth``."""

from services.auth.app import SERVICE, build
from services.auth.settings import AuthSettings
from shared.service import run_service


def main() -> None:
    settings = AuthSettings()
    run_service(SERVICE, settings, build(settings))


if __name__ == "__main__":
    main()
