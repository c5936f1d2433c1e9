"""Device simulators and linkage endpoint simulators; they reach the gateway over MQTT/HTTP only."""
