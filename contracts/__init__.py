"""The bus API: subjects and message models shared by every service and the gateway."""
