"""The workspace file monitor: watches one workspace tree and publishes its changes to the file-event stream."""
