"""Provisioning service process: ``python -m services.provisioning``."""

from services.provisioning.app import SERVICE, build
from services.provisioning.settings import ProvisioningSettings
from shared.service import run_service


def main() -> None:
    settings = ProvisioningSettings()
    run_service(SERVICE, settings, build(settings))


if __name__ == "__main__":
    main()
