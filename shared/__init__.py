"""Library code every service uses: settings, bus wiring, store, telemetry, service runtime."""
