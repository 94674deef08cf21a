"""file_event service process: ``python -m services.file_event``.

It joins the bus, owns the ``("file_event", …)`` store prefix and answers its health ping; its
domain handlers arrive with their own issue (see README, "Status").
"""

from shared.service import run_service
from shared.settings import CommonSettings

SERVICE = "file_event"


def main() -> None:
    run_service(SERVICE, CommonSettings(), lambda ctx: None)


if __name__ == "__main__":
    main()
