"""File-event service process: ``python -m services.file_event``."""

from services.file_event.app import SERVICE, build
from services.file_event.settings import FileEventSettings
from shared.service import run_service


def main() -> None:
    settings = FileEventSettings()
    run_service(SERVICE, settings, build(settings))


if __name__ == "__main__":
    main()
