"""Audit service process: ``python -m services.audit``."""

from services.audit.app import SERVICE, build
from services.audit.settings import AuditSettings
from shared.service import run_service


def main() -> None:
    settings = AuditSettings()
    run_service(SERVICE, settings, build(settings))


if __name__ == "__main__":
    main()
