"""The drone agent: the process each companion computer runs (``swarm agent --config
drone.toml``). One Raft node (consensus.driver over SQLite storage) replicating the
evacuation map behind client sessions, talking to its peers and clients over MQTT
(swarm.bus). See docs/agent.md.

Modules: :mod:`.config` (the TOML file), :mod:`.protocol` (client requests and replies
on the wire), :mod:`.service` (the client protocol's server side, sans-I/O), and the
process itself."""
