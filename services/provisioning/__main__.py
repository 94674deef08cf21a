"""provisioning service process: ``python -m services.provisioning``.

It joins the bus, owns the ``("provisioning", …)`` store prefix and answers its health ping; its
domain handlers arrive with their own issue (see README, "Status").
"""

from shared.service import run_service
from shared.settings import CommonSettings

SERVICE = "provisioning"


def main() -> None:
    run_service(SERVICE, CommonSettings(), lambda ctx: None)


if __name__ == "__main__":
    main()
