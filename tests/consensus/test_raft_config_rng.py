"""Config.make_rng: reproducible, and different per node when only a seed is shared (§5.2:
randomized election timeouts are what keeps split votes rare)."""

from consensus import Config


def _timeouts(config: Config, n: int = 8) -> list[int]:
    rng = config.make_rng()
    return [rng.randrange(config.election_tick, 2 * config.election_tick) for _ in range(n)]


def test_nodes_sharing_the_default_seed_draw_different_election_timeouts():
    draws = {node_id: tuple(_timeouts(Config(id=node_id))) for node_id in range(1, 6)}
    assert len(set(draws.values())) == 5


def test_same_id_and_seed_replay_the_same_draws():
    assert _timeouts(Config(id=3, seed=42)) == _timeouts(Config(id=3, seed=42))
    assert _timeouts(Config(id=3, seed=42)) != _timeouts(Config(id=3, seed=43))
