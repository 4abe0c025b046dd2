"""The link to one flight controller: telemetry and signal strength in, missions and
fences out. Knows nothing of consensus or of the map: it takes plans in MAVLink terms."""
