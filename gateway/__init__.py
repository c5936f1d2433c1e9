"""Campus security gateway: MQTT device messages to InfluxDB, alarms to police/fire linkage."""
