"""The application: the replicated evacuation map, the mission planner, the MQTT bus,
the drone agent process, the ground station and the command line."""
